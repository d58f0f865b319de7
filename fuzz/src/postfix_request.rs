//! Postfix policy requests (`postfix_policy::request::parse`), the policy
//! port's parser: any bytes give a request, "read more" or an error, never
//! a panic; the bounds hold; reading the same bytes in two pieces changes
//! nothing; every request of a connection's byte stream is found in turn;
//! and an answer is always one `action=` line and an empty line.

use greymilter::postfix_policy::answer::{self, Answer};
use greymilter::postfix_policy::request::{LIMITS, Request, parse};

pub fn check(data: &[u8]) {
    // A connection's stream: requests one after the other until an error
    // or an incomplete tail, as the driver reads them.
    let mut rest = data;
    let mut requests = 0;
    while let Ok(Some((request, len))) = parse(rest) {
        check_request(rest, &request, len);
        rest = rest.get(len..).unwrap_or_default();
        requests += 1;
        assert!(requests <= data.len() / 2, "more requests than bytes");
    }
    let whole = parse(data);
    match &whole {
        Ok(None) => {
            assert!(
                data.len() <= LIMITS.max_request,
                "{} bytes pending",
                data.len()
            );
            let tail = data.rsplit(|&b| b == b'\n').next().unwrap_or_default();
            assert!(
                tail.len() <= LIMITS.max_line,
                "a {} byte line pending",
                tail.len()
            );
        }
        Ok(Some((request, len))) => check_request(data, request, *len),
        Err(e) => {
            // The log line is one line.
            assert!(!e.to_string().contains('\n'), "{e:?}");
        }
    }
    // The same bytes received in two reads: what the first read decided
    // stands (a request found in it is the same; an error stays an error).
    let split = usize::from(data.first().copied().unwrap_or(0)) % (data.len() + 1);
    match parse(data.get(..split).unwrap_or_default()) {
        Ok(Some(first)) => assert_eq!(Ok(Some(first)), whole, "split at {split}"),
        Err(_) => assert!(whole.is_err(), "split at {split}: an error went away"),
        Ok(None) => {}
    }
}

fn check_request(buf: &[u8], request: &Request<'_>, len: usize) {
    assert!(
        len <= buf.len() && len <= LIMITS.max_request,
        "length {len}"
    );
    let used = buf.get(..len).unwrap_or_default();
    assert!(
        used.ends_with(b"\n\n") || used.ends_with(b"\n\r\n"),
        "a request must end with an empty line"
    );
    // One byte less is not a request yet.
    assert_eq!(parse(buf.get(..len - 1).unwrap_or_default()), Ok(None));
    // Values are borrowed from the request's own bytes and hold no newline.
    for value in [
        request.protocol_state,
        request.client_address,
        request.client_name,
        request.helo_name,
        request.sender,
        request.recipient,
        request.sasl_username,
        request.queue_id,
        request.instance,
    ] {
        assert!(!value.contains('\n'));
        assert!(value.len() <= LIMITS.max_line);
        let inside = used.as_ptr_range();
        assert!(value.is_empty() || inside.contains(&value.as_ptr()));
    }
    // An answer quoting what the client sent is still one line.
    let mut out = Vec::new();
    answer::write(
        &mut out,
        &Answer::Prepend {
            name: "X-Greylist",
            value: request.helo_name,
        },
    );
    assert!(out.ends_with(b"\n\n"));
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 2);
}
