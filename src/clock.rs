//! UTC calendar fields of a `SystemTime` and fixed-width digits: what the two timestamps written
//! on every request (SigV4's `x-amz-date`, the log line's `timestamp`) need, without a formatter.

use std::time::{SystemTime, UNIX_EPOCH};

/// A time's UTC calendar fields; times before 1970 read as 1970-01-01T00:00:00.
pub struct Utc {
    pub year: u64,
    pub month: u64,
    pub day: u64,
    pub hour: u64,
    pub minute: u64,
    pub second: u64,
    pub micros: u64,
}

impl From<SystemTime> for Utc {
    fn from(time: SystemTime) -> Self {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (year, month, day) = civil_from_days(secs / 86_400);
        let of_day = secs % 86_400;
        Utc {
            year,
            month,
            day,
            hour: of_day / 3600,
            minute: of_day / 60 % 60,
            second: of_day % 60,
            micros: u64::from(since.subsec_micros()),
        }
    }
}

impl Utc {
    /// Writes year (4 digits), month, day, hour, minute and second (2 each) into `text` at the
    /// six offsets `at`, leaving the separators between them as they are.
    pub fn put_fields(&self, text: &mut [u8], at: [usize; 6]) {
        let fields = [
            (self.year, 4),
            (self.month, 2),
            (self.day, 2),
            (self.hour, 2),
            (self.minute, 2),
            (self.second, 2),
        ];
        for ((value, width), start) in fields.into_iter().zip(at) {
            put_digits(&mut text[start..start + width], value);
        }
    }
}

/// Writes the last `slot.len()` decimal digits of `value` into `slot`, zero-padded.
pub fn put_digits(slot: &mut [u8], mut value: u64) {
    for place in slot.iter_mut().rev() {
        *place = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// (year, month, day) of the proleptic Gregorian calendar for days since 1970-01-01
/// (H. Hinnant's `civil_from_days`, unsigned: nothing here dates before 1970).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}
