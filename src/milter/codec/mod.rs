//! The milter wire format: the protocol's constants here, and
//!
//! * [`framing`]: `len: u32 BE | cmd: u8 | payload` packets, the receive
//!   buffer that yields whole frames, packet encoding;
//! * [`command`]: typed decode (and encode, for the MTA side) of every
//!   SMFIC_* command;
//! * [`response`]: encode (and decode, for the MTA side) of the SMFIR_*
//!   responses.
//!
//! Decoding borrows from the caller's buffer: no allocation per packet.
//! Everything is re-exported here, so users name `codec::Command` etc.

mod command;
mod framing;
mod response;

pub use command::*;
pub use framing::*;
pub use response::*;

/// Largest payload accepted (libmilter's `MILTER_MAX_DATA_SIZE`). We never
/// negotiate the MDS_* bits, so no legitimate packet comes near it.
pub const MAX_PAYLOAD: usize = 65_535;
/// Largest packet on the wire, length field included.
pub const MAX_FRAME: usize = 4 + 1 + MAX_PAYLOAD;

/// SMFIC_* command bytes (MTA → milter).
pub mod cmd {
    pub const OPTNEG: u8 = b'O';
    pub const MACRO: u8 = b'D';
    pub const CONNECT: u8 = b'C';
    pub const HELO: u8 = b'H';
    pub const MAIL: u8 = b'M';
    pub const RCPT: u8 = b'R';
    pub const DATA: u8 = b'T';
    pub const HEADER: u8 = b'L';
    pub const EOH: u8 = b'N';
    pub const BODY: u8 = b'B';
    pub const BODYEOB: u8 = b'E';
    pub const UNKNOWN: u8 = b'U';
    pub const ABORT: u8 = b'A';
    pub const QUIT: u8 = b'Q';
    pub const QUIT_NC: u8 = b'K';
}

/// SMFIR_* response bytes (milter → MTA).
pub mod resp {
    pub const ADDRCPT: u8 = b'+';
    pub const DELRCPT: u8 = b'-';
    pub const ADDRCPT_PAR: u8 = b'2';
    pub const SHUTDOWN: u8 = b'4';
    pub const ACCEPT: u8 = b'a';
    pub const REPLBODY: u8 = b'b';
    pub const CONTINUE: u8 = b'c';
    pub const DISCARD: u8 = b'd';
    pub const CHGFROM: u8 = b'e';
    pub const CONN_FAIL: u8 = b'f';
    pub const ADDHEADER: u8 = b'h';
    pub const INSHEADER: u8 = b'i';
    pub const SETSYMLIST: u8 = b'l';
    pub const CHGHEADER: u8 = b'm';
    pub const PROGRESS: u8 = b'p';
    pub const QUARANTINE: u8 = b'q';
    pub const REJECT: u8 = b'r';
    pub const SKIP: u8 = b's';
    pub const TEMPFAIL: u8 = b't';
    pub const REPLYCODE: u8 = b'y';
    pub const OPTNEG: u8 = b'O';
}

/// SMFIF_* action bits.
pub mod action {
    pub const ADDHDRS: u32 = 0x001;
    pub const CHGBODY: u32 = 0x002;
    pub const ADDRCPT: u32 = 0x004;
    pub const DELRCPT: u32 = 0x008;
    pub const CHGHDRS: u32 = 0x010;
    pub const QUARANTINE: u32 = 0x020;
    pub const CHGFROM: u32 = 0x040;
    pub const ADDRCPT_PAR: u32 = 0x080;
    pub const SETSYMLIST: u32 = 0x100;
    /// `SMFI_V1_ACTS`: what `actions = 0` in an offer means.
    pub const V1: u32 = 0x0F;
    /// Every v6 action bit.
    pub const ALL: u32 = 0x1FF;
}

/// SMFIP_* protocol bits.
pub mod proto {
    pub const NOCONNECT: u32 = 0x0000_0001;
    pub const NOHELO: u32 = 0x0000_0002;
    pub const NOMAIL: u32 = 0x0000_0004;
    pub const NORCPT: u32 = 0x0000_0008;
    pub const NOBODY: u32 = 0x0000_0010;
    pub const NOHDRS: u32 = 0x0000_0020;
    pub const NOEOH: u32 = 0x0000_0040;
    pub const NR_HDR: u32 = 0x0000_0080;
    pub const NOUNKNOWN: u32 = 0x0000_0100;
    pub const NODATA: u32 = 0x0000_0200;
    pub const SKIP: u32 = 0x0000_0400;
    pub const RCPT_REJ: u32 = 0x0000_0800;
    pub const NR_CONN: u32 = 0x0000_1000;
    pub const NR_HELO: u32 = 0x0000_2000;
    pub const NR_MAIL: u32 = 0x0000_4000;
    pub const NR_RCPT: u32 = 0x0000_8000;
    pub const NR_DATA: u32 = 0x0001_0000;
    pub const NR_UNKN: u32 = 0x0002_0000;
    pub const NR_EOH: u32 = 0x0004_0000;
    pub const NR_BODY: u32 = 0x0008_0000;
    pub const HDR_LEADSPC: u32 = 0x0010_0000;
    pub const MDS_256K: u32 = 0x1000_0000;
    pub const MDS_1M: u32 = 0x2000_0000;
    /// Every no-reply bit.
    pub const NR_ALL: u32 =
        NR_HDR | NR_CONN | NR_HELO | NR_MAIL | NR_RCPT | NR_DATA | NR_UNKN | NR_EOH | NR_BODY;
    /// The NR_* bit that silences the reply to command `c` (0 if none).
    pub fn no_reply_bit(c: u8) -> u32 {
        match c {
            super::cmd::CONNECT => NR_CONN,
            super::cmd::HELO => NR_HELO,
            super::cmd::MAIL => NR_MAIL,
            super::cmd::RCPT => NR_RCPT,
            super::cmd::DATA => NR_DATA,
            super::cmd::HEADER => NR_HDR,
            super::cmd::EOH => NR_EOH,
            super::cmd::BODY => NR_BODY,
            super::cmd::UNKNOWN => NR_UNKN,
            _ => 0,
        }
    }

    /// `SMFI_V1_PROT`: what `protocol = 0` in an offer means.
    pub const V1: u32 = 0x3F;
    /// `SMFI_CURR_PROT`: every v6 step bit.
    pub const ALL: u32 = 0x1F_FFFF;
}

/// SMFIM_* macro stage numbers used in the OPTNEG macro lists. EOM comes
/// numerically before EOH.
pub mod stage {
    pub const CONNECT: u32 = 0;
    pub const HELO: u32 = 1;
    pub const ENVFROM: u32 = 2;
    pub const ENVRCPT: u32 = 3;
    pub const DATA: u32 = 4;
    pub const EOM: u32 = 5;
    pub const EOH: u32 = 6;
}

#[cfg(test)]
mod tests {
    use super::framing::INITIAL_BUFFER;
    use super::*;
    use crate::reply::Reply;

    #[test]
    fn percent_is_doubled_in_a_replycode_with_one_nul() {
        let r = Reply::parse("451 4.7.1 100% sure").unwrap();
        let mut out = Vec::new();
        encode_replycode(&mut out, &r);
        assert_eq!(&out[5..], b"451 4.7.1 100%% sure\0");
        assert_eq!(out[4], resp::REPLYCODE);
    }

    #[test]
    fn frame_size_limits() {
        assert_eq!(frame_size([0, 0, 0, 0]), Err(FrameError::ZeroLength));
        assert_eq!(frame_size([0, 0, 0, 1]), Ok(5));
        assert_eq!(frame_size([0, 1, 0, 0]), Ok(4 + 65_536));
        assert_eq!(frame_size([0, 1, 0, 1]), Err(FrameError::TooLong(65_537)));
        assert_eq!(
            frame_size([0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::TooLong(u32::MAX))
        );
    }

    #[test]
    fn frame_buffer_reassembles_split_input() {
        let mut wire = Vec::new();
        encode_empty(&mut wire, cmd::ABORT);
        encode_packet(&mut wire, cmd::RCPT, |o| o.extend_from_slice(b"<a@b>\0"));
        let mut fb = FrameBuffer::new();
        let mut seen = Vec::new();
        for byte in &wire {
            let spare = fb.spare().unwrap();
            spare[0] = *byte;
            fb.filled(1);
            while let Some(f) = fb.next_frame().unwrap() {
                seen.push((f.cmd, f.payload.to_vec()));
            }
        }
        assert_eq!(seen, vec![(b'A', vec![]), (b'R', b"<a@b>\0".to_vec())]);
        assert!(fb.is_empty());
    }

    #[test]
    fn frame_buffer_grows_only_for_a_valid_big_packet() {
        let mut fb = FrameBuffer::new();
        let spare = fb.spare().unwrap();
        spare[..4].copy_from_slice(&[0, 1, 0, 0]);
        fb.filled(4);
        assert!(fb.next_frame().unwrap().is_none());
        assert!(fb.spare().unwrap().len() >= 65_536);
        assert!(fb.capacity() <= MAX_FRAME + INITIAL_BUFFER);

        let mut bad = FrameBuffer::new();
        bad.spare().unwrap()[..4].copy_from_slice(&[0x7f, 0, 0, 0]);
        bad.filled(4);
        assert_eq!(bad.next_frame(), Err(FrameError::TooLong(0x7f00_0000)));
        assert!(bad.spare().is_err());
        assert!(bad.capacity() <= INITIAL_BUFFER);
    }
}
