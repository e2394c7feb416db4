//! `cron_restart`: a PM2 cron expression, or systemd's calendar syntax, checked into the
//! value of a timer's `OnCalendar=`. Pure: no clock, no `systemd-analyze`.
//!
//! PM2's cron has 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds
//! first, each `*`, a number or name (`JAN`, `MON`), a range `a-b`, a step `*/n`, `a/n` or
//! `a-b/n`, or a comma list of these; and the shorthands `@yearly` .. `@hourly`. Each field
//! becomes the matching component of `DOW *-MM-DD HH:MM:SS`. One thing cron can say that
//! systemd cannot: with both the day of the month and the day of the week restricted, cron
//! fires on either, systemd only on both; that is refused.
//!
//! Anything with 1 to 4 words is read as systemd's own syntax (systemd.time(7)): a
//! shorthand (`daily`), or `[WEEKDAYS] [[YEAR-]MONTH-DAY] [HOUR:MINUTE[:SECOND]] [TIMEZONE]`
//! with lists, `..` ranges and `/` repetitions; it is checked word by word and passed on as
//! written.

use std::collections::BTreeSet;

/// A checked schedule: what the user wrote and the `OnCalendar=` value it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// As written in the app file.
    pub written: String,
    /// The `OnCalendar=` value.
    pub on_calendar: String,
}

/// What to write instead, the tail of every message.
const EXAMPLE: &str = "write cron's 5 fields (6 with seconds first) like `\"0 3 * * *\"`, or systemd's calendar syntax like `\"*-*-* 03:00:00\"`";

impl Schedule {
    /// Checks `s`, cron or systemd syntax.
    pub fn parse(s: &str) -> Result<Self, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let on_calendar = if let Some(name) = s.trim().strip_prefix('@') {
            shorthand(name).map_err(|m| format!("`{s}` {m}"))?
        } else {
            match words.len() {
                0 => return Err(format!("is empty; {EXAMPLE}")),
                5 | 6 => cron(&words).map_err(|m| format!("`{s}`: {m}"))?,
                1..=4 => {
                    systemd(&words).map_err(|m| {
                        format!("`{s}` is not systemd calendar syntax: {m}; {EXAMPLE}")
                    })?;
                    words.join(" ")
                }
                n => {
                    return Err(format!(
                        "`{s}` has {n} fields; cron has 5, or 6 with seconds first; {EXAMPLE}"
                    ))
                }
            }
        };
        Ok(Self {
            written: s.to_string(),
            on_calendar,
        })
    }
}

/// cron's `@NAME` shorthands, spelled out (cron's `@weekly` is Sunday, systemd's Monday).
fn shorthand(name: &str) -> Result<String, String> {
    Ok(match name {
        "yearly" | "annually" => "*-01-01 00:00:00",
        "monthly" => "*-*-01 00:00:00",
        "weekly" => "Sun *-*-* 00:00:00",
        "daily" | "midnight" => "*-*-* 00:00:00",
        "hourly" => "*-*-* *:00:00",
        "reboot" => {
            return Err(
                "is not a schedule: the app starts at boot already when its target is enabled (`sysmgr start` enables it); remove `cron_restart`".into(),
            )
        }
        _ => {
            return Err(format!(
                "is not a cron shorthand; use @yearly, @monthly, @weekly, @daily or @hourly, or {EXAMPLE}"
            ))
        }
    }
    .to_string())
}

/// One cron field's rules.
struct Field {
    what: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECOND: Field = Field {
    what: "second",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: Field = Field {
    what: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    what: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: Field = Field {
    what: "day of the month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    what: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
const WEEKDAY: Field = Field {
    what: "day of the week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};

/// A field read: `*` (every value), or the values it allows; `step` keeps `*/n` and `a/n`
/// alone in a field, which systemd writes the same way.
enum Parsed {
    Every,
    Start(u32, u32),
    Values(BTreeSet<u32>),
}

impl Field {
    fn value(&self, s: &str) -> Result<u32, String> {
        if let Ok(n) = s.parse::<u32>() {
            if n < self.min || n > self.max {
                return Err(format!(
                    "the {} `{n}` is out of range; use {} to {}",
                    self.what, self.min, self.max
                ));
            }
            return Ok(n);
        }
        let upper = s.to_ascii_uppercase();
        match self.names.iter().position(|n| *n == upper) {
            Some(i) => Ok(i as u32 + self.min),
            None if self.names.is_empty() => Err(format!(
                "the {} `{s}` is not a number from {} to {}",
                self.what, self.min, self.max
            )),
            None => Err(format!(
                "the {} `{s}` is not a number from {} to {} or one of {}",
                self.what,
                self.min,
                self.max,
                self.names.join(", ")
            )),
        }
    }

    fn parse(&self, text: &str) -> Result<Parsed, String> {
        if text == "*" || (text == "?" && (self.what == DAY.what || self.what == WEEKDAY.what)) {
            return Ok(Parsed::Every);
        }
        let mut values = BTreeSet::new();
        let items: Vec<&str> = text.split(',').collect();
        for item in &items {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => {
                    let step: u32 = s.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("the step `{s}` in `{item}` is not a positive number")
                    })?;
                    (r, Some(step))
                }
                None => (*item, None),
            };
            let (lo, hi) = match range.split_once('-') {
                _ if range == "*" => (self.min, self.max),
                Some((a, b)) => (self.value(a)?, self.value(b)?),
                None => {
                    let v = self.value(range)?;
                    (v, if step.is_some() { self.max } else { v })
                }
            };
            if lo > hi {
                return Err(format!(
                    "the range `{range}` of the {} runs backwards; write it from low to high",
                    self.what
                ));
            }
            if items.len() == 1 && !range.contains('-') && self.what != WEEKDAY.what {
                if let Some(step) = step {
                    return Ok(Parsed::Start(lo, step));
                }
            }
            values.extend((lo..=hi).step_by(step.unwrap_or(1) as usize));
        }
        Ok(Parsed::Values(values))
    }
}

/// A set of numbers as systemd writes a component: runs of three or more as `a..b`.
fn list(values: &BTreeSet<u32>, show: impl Fn(u32) -> String) -> String {
    let values: Vec<u32> = values.iter().copied().collect();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let mut j = i;
        while j + 1 < values.len() && values[j + 1] == values[j] + 1 {
            j += 1;
        }
        if j >= i + 2 {
            parts.push(format!("{}..{}", show(values[i]), show(values[j])));
        } else {
            parts.extend(values[i..=j].iter().map(|&v| show(v)));
        }
        i = j + 1;
    }
    parts.join(",")
}

fn component(field: &Field, text: &str) -> Result<String, String> {
    Ok(match field.parse(text)? {
        Parsed::Every => "*".into(),
        Parsed::Start(start, step) => format!("{start:02}/{step}"),
        Parsed::Values(values) => list(&values, |v| format!("{v:02}")),
    })
}

/// A 5- or 6-field cron expression as `OnCalendar=`.
fn cron(fields: &[&str]) -> Result<String, String> {
    let (second, rest) = if fields.len() == 6 {
        (component(&SECOND, fields[0])?, &fields[1..])
    } else {
        ("00".to_string(), fields)
    };
    let minute = component(&MINUTE, rest[0])?;
    let hour = component(&HOUR, rest[1])?;
    let day = component(&DAY, rest[2])?;
    let month = component(&MONTH, rest[3])?;
    let weekdays = match WEEKDAY.parse(rest[4])? {
        Parsed::Every => None,
        Parsed::Start(start, step) => Some((start..=7).step_by(step as usize).collect()),
        Parsed::Values(v) => Some(v),
    };
    let weekdays = weekdays.map(|v: BTreeSet<u32>| {
        // systemd counts Monday first: Monday 0 .. Sunday 6 (cron's 0 and 7).
        let monday_first: BTreeSet<u32> = v.iter().map(|d| (d + 6) % 7).collect();
        const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        list(&monday_first, |d| NAMES[d as usize].to_string())
    });
    if day != "*" && weekdays.is_some() {
        return Err(format!(
            "both the day of the month (`{}`) and the day of the week (`{}`) are restricted, and cron fires on either while systemd fires only on both; keep one of them as `*`, or write the schedule in systemd's calendar syntax",
            rest[2], rest[4]
        ));
    }
    let date_time = format!("*-{month}-{day} {hour}:{minute}:{second}");
    Ok(match weekdays {
        Some(w) if w.split(',').count() == 7 || w == "Mon..Sun" => date_time,
        Some(w) => format!("{w} {date_time}"),
        None => date_time,
    })
}

/// systemd's shorthands (`systemd.time(7)`).
const SYSTEMD_SHORTHANDS: &[&str] = &[
    "minutely",
    "hourly",
    "daily",
    "monthly",
    "weekly",
    "yearly",
    "annually",
    "quarterly",
    "semiannually",
];

const DAY_NAMES: &[&str] = &[
    "mon",
    "tue",
    "wed",
    "thu",
    "fri",
    "sat",
    "sun",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Checks systemd calendar syntax, word by word.
fn systemd(words: &[&str]) -> Result<(), String> {
    let mut rest = words;
    if SYSTEMD_SHORTHANDS.contains(&rest[0]) {
        return match rest.len() {
            1 => Ok(()),
            2 => timezone(rest[1]),
            _ => Err(format!("`{}` cannot follow `{}`", rest[2], rest[0])),
        };
    }
    let mut seen = false;
    if rest[0].starts_with(|c: char| c.is_ascii_alphabetic()) && !rest[0].contains(':') {
        if rest.len() == 1 && !is_weekdays(rest[0]) {
            return Err(format!(
                "`{}` is not a weekday or a shorthand like `daily`",
                rest[0]
            ));
        }
        if is_weekdays(rest[0]) {
            rest = &rest[1..];
            seen = true;
        }
    }
    if let Some(date) = rest.first().filter(|w| w.contains('-') && !w.contains(':')) {
        // `~` instead of the last `-` counts the day from the end of the month.
        let parts: Vec<&str> = date.split(['-', '~']).collect();
        let (year, month, day) = match parts.as_slice() {
            [y, m, d] => (Some(*y), *m, *d),
            [m, d] => (None, *m, *d),
            _ => {
                return Err(format!(
                    "the date `{date}` is not `YEAR-MONTH-DAY` or `MONTH-DAY`"
                ))
            }
        };
        if let Some(year) = year {
            components(year, "year", 1970, 2199)?;
        }
        components(month, "month", 1, 12)?;
        components(day, "day", 1, 31)?;
        rest = &rest[1..];
        seen = true;
    }
    if let Some(time) = rest.first().filter(|w| w.contains(':')) {
        let parts: Vec<&str> = time.split(':').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(format!(
                "the time `{time}` is not `HOUR:MINUTE` or `HOUR:MINUTE:SECOND`"
            ));
        }
        components(parts[0], "hour", 0, 23)?;
        components(parts[1], "minute", 0, 59)?;
        if let Some(second) = parts.get(2) {
            let whole = second.split_once('.').map_or(*second, |(w, frac)| {
                if frac.chars().all(|c| c.is_ascii_digit()) {
                    w
                } else {
                    "x"
                }
            });
            components(whole, "second", 0, 59)?;
        }
        rest = &rest[1..];
        seen = true;
    }
    match rest {
        [] if seen => Ok(()),
        [] => Err("no weekday, date or time".into()),
        [tz] if seen => timezone(tz),
        [w, ..] => Err(format!(
            "`{w}` is not a weekday, a date, a time or a timezone here"
        )),
    }
}

/// `Mon`, `Mon..Fri`, `Sat,Sun`, case-insensitive.
fn is_weekdays(word: &str) -> bool {
    word.split(',').all(|item| {
        item.split("..")
            .all(|d| DAY_NAMES.contains(&d.to_ascii_lowercase().as_str()))
            && item.split("..").count() <= 2
    })
}

fn timezone(word: &str) -> Result<(), String> {
    let ok = word == "UTC"
        || (word.starts_with(|c: char| c.is_ascii_uppercase())
            && word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_-+".contains(c)));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{word}` is not a date like `2030-01-31`, a time like `03:00` or a timezone like `UTC`"
        ))
    }
}

/// One component: `*`, or a comma list of `N`, `N..M`, each optionally `/STEP`.
fn components(text: &str, what: &str, min: u32, max: u32) -> Result<(), String> {
    if text == "*" {
        return Ok(());
    }
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step {
            if step.parse::<u32>().ok().filter(|n| *n > 0).is_none() {
                return Err(format!("the {what} step `{step}` is not a positive number"));
            }
        }
        let number = |s: &str| -> Result<u32, String> {
            s.parse::<u32>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| format!("the {what} `{s}` is not a number from {min} to {max}"))
        };
        match range.split_once("..") {
            Some((a, b)) => {
                if number(a)? > number(b)? {
                    return Err(format!("the {what} range `{range}` runs backwards"));
                }
            }
            None if range == "*" && step.is_some() => {}
            None => {
                number(range)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal(s: &str) -> String {
        Schedule::parse(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .on_calendar
    }

    #[test]
    fn cron_fields_become_calendar_components() {
        assert_eq!(cal("0 3 * * *"), "*-*-* 03:00:00");
        assert_eq!(cal("*/15 * * * *"), "*-*-* *:00/15:00");
        assert_eq!(cal("30 2 * * 1-5"), "Mon..Fri *-*-* 02:30:00");
        assert_eq!(cal("0 0 * * SUN,sat"), "Sat,Sun *-*-* 00:00:00");
        assert_eq!(cal("0 0 * * 0,7"), "Sun *-*-* 00:00:00");
        assert_eq!(cal("0 0 * * *"), "*-*-* 00:00:00");
        assert_eq!(cal("0 0 * * 0-6"), "*-*-* 00:00:00");
        assert_eq!(cal("0 12 1,15 JAN-MAR *"), "*-01..03-01,15 12:00:00");
        assert_eq!(
            cal("5,10,11,12 8-18/2 * * *"),
            "*-*-* 08,10,12,14,16,18:05,10..12:00"
        );
        assert_eq!(cal("*/10 * * * * *"), "*-*-* *:*:00/10");
        assert_eq!(cal("7 30 4 * * *"), "*-*-* 04:30:07");
        assert_eq!(cal("0 0 ? * MON"), "Mon *-*-* 00:00:00");
        assert_eq!(cal("0 0 1 */3 *"), "*-01/3-01 00:00:00");
        assert_eq!(cal("@daily"), "*-*-* 00:00:00");
        assert_eq!(cal("@weekly"), "Sun *-*-* 00:00:00");
        assert_eq!(cal("@hourly"), "*-*-* *:00:00");
    }

    #[test]
    fn systemd_syntax_is_passed_on_as_written() {
        for s in [
            "daily",
            "weekly UTC",
            "*-*-* 03:00:00",
            "Mon..Fri 22:30",
            "Sat,Sun *-*-* 10:00",
            "2030-01-01 00:00:00 UTC",
            "*-*~01 00:00",
            "*-02~03",
            "*:0/5",
            "*-*-* *:*:0/10",
            "12-25 08:00 Europe/Berlin",
            "Wed",
            "03:00:00.5",
        ] {
            assert_eq!(cal(s), s, "{s}");
        }
    }

    #[test]
    fn what_neither_syntax_can_say_is_refused() {
        let err = |s: &str| Schedule::parse(s).unwrap_err();
        assert_eq!(
            err("0 3 1 * MON"),
            "`0 3 1 * MON`: both the day of the month (`1`) and the day of the week (`MON`) are restricted, and cron fires on either while systemd fires only on both; keep one of them as `*`, or write the schedule in systemd's calendar syntax"
        );
        assert_eq!(
            err("61 * * * *"),
            "`61 * * * *`: the minute `61` is out of range; use 0 to 59"
        );
        assert_eq!(err("0 0 * FOO *"), "`0 0 * FOO *`: the month `FOO` is not a number from 1 to 12 or one of JAN, FEB, MAR, APR, MAY, JUN, JUL, AUG, SEP, OCT, NOV, DEC");
        assert_eq!(
            err("0 5-1 * * *"),
            "`0 5-1 * * *`: the range `5-1` of the hour runs backwards; write it from low to high"
        );
        assert_eq!(
            err("*/0 * * * *"),
            "`*/0 * * * *`: the step `0` in `*/0` is not a positive number"
        );
        assert!(err("@reboot").starts_with("`@reboot` is not a schedule"));
        assert!(err("1 2 3 4 5 6 7").starts_with("`1 2 3 4 5 6 7` has 7 fields"));
        assert_eq!(err("   "), format!("is empty; {EXAMPLE}"));
        assert_eq!(err("Mon 25:00"), format!("`Mon 25:00` is not systemd calendar syntax: the hour `25` is not a number from 0 to 23; {EXAMPLE}"));
        assert_eq!(err("tomorrow"), format!("`tomorrow` is not systemd calendar syntax: `tomorrow` is not a weekday or a shorthand like `daily`; {EXAMPLE}"));
        assert!(
            err("*-13-01").contains("the month `13`"),
            "{}",
            err("*-13-01")
        );
        assert!(err("daily at 3").contains("cannot follow"));
    }
}
