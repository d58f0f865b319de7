//! RFC 5322 dates (`Tue, 04 Mar 2025 14:03:05 +0000`) for the X-Greylist
//! header, always in UTC.

/// Formats unix seconds as an RFC 5322 `date-time` in UTC.
pub fn rfc5322(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = Civil::of(secs);
    let weekday = DAYS
        .get((secs / 86_400 % 7) as usize)
        .copied()
        .unwrap_or("Thu");
    let month = MONTHS
        .get(usize::from(t.month).saturating_sub(1))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{weekday}, {:02} {month} {} {:02}:{:02}:{:02} +0000",
        t.day, t.year, t.hour, t.minute, t.second
    )
}

/// Formats unix seconds as RFC 3339 in UTC (`2025-03-04T14:13:05Z`), for
/// logs and reports. Never fails: past year 9999 the year simply has more
/// digits (a clock that far off is a fact worth showing, not a crash).
pub fn rfc3339(secs: u64) -> String {
    let t = Civil::of(secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// A moment as calendar fields (UTC).
struct Civil {
    year: u64,
    month: u8,
    day: u8,
    hour: u64,
    minute: u64,
    second: u64,
}

impl Civil {
    fn of(secs: u64) -> Civil {
        let (year, month, day) = civil_from_days(secs / 86_400);
        let rem = secs % 86_400;
        Civil {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
        }
    }
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31), proleptic
/// Gregorian, by counting 400-year eras starting on 1 March.
fn civil_from_days(days: u64) -> (u64, u8, u8) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(rfc5322(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(rfc5322(1_741_097_585), "Tue, 04 Mar 2025 14:13:05 +0000");
        assert_eq!(rfc5322(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 +0000");
    }

    #[test]
    fn rfc3339_matches_humantime_and_goes_past_year_9999() {
        for secs in [
            0,
            951_782_400,
            1_741_097_585,
            4_102_444_799,
            253_402_300_799,
        ] {
            let by_humantime = humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
            );
            assert_eq!(rfc3339(secs), by_humantime.to_string());
        }
        // Where humantime gives up (and `to_string` on it panics).
        assert_eq!(rfc3339(253_402_300_800), "10000-01-01T00:00:00Z");
        assert!(rfc3339(u64::MAX).ends_with("T07:00:15Z"));
        assert!(rfc5322(u64::MAX).ends_with(" 07:00:15 +0000"));
    }
}
