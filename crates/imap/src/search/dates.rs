//! Dates for SEARCH: the day of the INTERNALDATE (BEFORE/ON/SINCE, taken
//! in UTC, the zone INTERNALDATE is shown in) and the day written in the
//! Date: header (SENTBEFORE/SENTON/SENTSINCE, in the header's own zone,
//! RFC 3501 "disregarding time and timezone").

use chrono::{DateTime, NaiveDate};
use mail_parser::HeaderValue;
use mail_parser::parsers::MessageStream;
use postamt_store::MessageRecord;

/// The calendar day of the INTERNALDATE.
pub fn internal_day(record: &MessageRecord) -> NaiveDate {
    DateTime::from_timestamp(record.internal_date, 0)
        .map(|d| d.date_naive())
        .unwrap_or_default()
}

/// The calendar day of a Date: header value, as written.
pub fn header_day(value: &[u8]) -> Option<NaiveDate> {
    let mut buf = Vec::with_capacity(value.len() + 2);
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n");
    match MessageStream::new(&buf).parse_date() {
        HeaderValue::DateTime(dt) => {
            NaiveDate::from_ymd_opt(i32::from(dt.year), u32::from(dt.month), u32::from(dt.day))
        }
        _ => None,
    }
}

/// The day SENT* keys compare: the Date: header's, or the INTERNALDATE's
/// when the message has no readable Date: (as Dovecot does).
pub fn sent_day(record: &MessageRecord) -> NaiveDate {
    record
        .meta
        .envelope
        .date
        .as_deref()
        .and_then(header_day)
        .unwrap_or_else(|| internal_day(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_day_keeps_the_written_zone() {
        // 23:30 at -0500 is the next day in UTC; SENTON uses the written day.
        assert_eq!(
            header_day(b"Tue, 1 Jul 2003 23:30:00 -0500"),
            NaiveDate::from_ymd_opt(2003, 7, 1)
        );
        assert_eq!(header_day(b"garbage"), None);
    }

    #[test]
    fn internal_day_in_utc() {
        let record = MessageRecord {
            uid: 1,
            modseq: 1,
            flags: Default::default(),
            size: 0,
            internal_date: 1_057_102_200, // 2003-07-01T23:30:00Z
            queue_id: None,
            meta: Default::default(),
        };
        assert_eq!(
            internal_day(&record),
            NaiveDate::from_ymd_opt(2003, 7, 1).unwrap()
        );
        // No Date: header: the internal date stands in.
        assert_eq!(sent_day(&record), internal_day(&record));
    }
}
