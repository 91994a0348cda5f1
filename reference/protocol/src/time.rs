//! The events' `timestamp`: PostgreSQL's JSON form of a `timestamptz`
//! (`2026-12-03T14:12:51.123456+00:00`, RFC 3339), read as time since the Unix epoch, so a
//! consumer can tell how long after its write an event reached it.

use std::time::Duration;

/// `text` as time since the Unix epoch; `None` if it is not an RFC 3339 date-time (with `T` or a
/// space between date and time, an optional fraction, and `Z` or a `±HH[:MM]` offset) or lies
/// before the epoch.
pub fn parse_timestamp(text: &str) -> Option<Duration> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, minute, second) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos = 0u64;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        for (i, c) in fraction[..len.min(9)].iter().enumerate() {
            nanos += u64::from(c - b'0') * 10u64.pow(8 - i as u32);
        }
        rest = &fraction[len..];
    }
    let offset_s = offset(rest)?;
    let days = days_from_civil(year as i64, month, day);
    let local = days * 86_400 + (hour * 3_600 + minute * 60 + second) as i64;
    let utc = u64::try_from(local - offset_s).ok()?;
    Some(Duration::from_secs(utc) + Duration::from_nanos(nanos))
}

/// `Z`, `+HH`, `+HH:MM` or `+HHMM` (or `-`) as seconds east of UTC.
fn offset(text: &[u8]) -> Option<i64> {
    if text == b"Z" || text == b"z" {
        return Some(0);
    }
    let (sign, rest) = match text.split_first()? {
        (b'+', rest) => (1, rest),
        (b'-', rest) => (-1, rest),
        _ => return None,
    };
    let (hours, minutes) = match rest.len() {
        2 => (digits(rest)?, 0),
        4 => (digits(&rest[..2])?, digits(&rest[2..])?),
        5 if rest[2] == b':' => (digits(&rest[..2])?, digits(&rest[3..])?),
        _ => return None,
    };
    (hours <= 23 && minutes <= 59).then_some(sign * (hours * 3_600 + minutes * 60) as i64)
}

fn digits(text: &[u8]) -> Option<u32> {
    text.iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_json_timestamps_are_read_to_the_microsecond() {
        // date -u -d 2026-12-03T14:12:51Z +%s → 1796307171
        let t = parse_timestamp("2026-12-03T14:12:51.123456+00:00").unwrap();
        assert_eq!(t, Duration::from_secs(1_796_307_171) + Duration::from_micros(123_456));
        assert_eq!(parse_timestamp("2026-12-03T14:12:51Z").unwrap(), Duration::from_secs(1_796_307_171));
        assert_eq!(parse_timestamp("2026-12-03 16:12:51+02").unwrap(), Duration::from_secs(1_796_307_171));
        assert_eq!(parse_timestamp("2026-12-03T09:42:51-04:30").unwrap(), Duration::from_secs(1_796_307_171));
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z").unwrap(), Duration::ZERO);
        assert_eq!(parse_timestamp("2000-02-29T00:00:00Z").unwrap(), Duration::from_secs(951_782_400));
    }

    #[test]
    fn anything_else_is_none() {
        for bad in [
            "",
            "t",
            "2026-12-03",
            "2026-13-03T00:00:00Z",
            "2026-12-03T24:00:00Z",
            "2026-12-03T00:00:00",
            "2026-12-03T00:00:00.Z",
            "2026-12-03T00:00:00+5",
            "1969-12-31T23:59:59Z",
            "2026-12-03T00:00:00+00:00x",
            "２026-12-03T00:00:00Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }
}
