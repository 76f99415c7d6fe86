//! `[detection]`: the detection rules evaluated over the committed stream
//! (env `VELLUM_DETECTION_<KEY>`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::{Time, UtcOffset, Weekday};

use super::ConfigError;

/// `[detection]` as written by an operator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDetection {
    /// Evaluate the rules inside `serve`.
    pub enabled: bool,
    /// The rules that run, comma-separated (names in [`RuleId`]).
    pub rules: String,
    /// How often an idle evaluator looks for new committed events, ms.
    pub poll_ms: u64,
    /// Most entries read per step.
    pub batch_max_events: usize,
    /// Most triggering events an alert references by id (the count is
    /// always complete).
    pub max_listed_events: usize,
    /// `phi-read-volume`: more than this many PHI reads by one user in one
    /// clock hour.
    pub phi_reads_per_hour: u64,
    /// Working hours `HH:MM-HH:MM` (local time in `timezone`).
    pub business_hours: String,
    /// Working days, comma-separated (`mon,tue,…`).
    pub business_days: String,
    /// The site's time zone: an IANA name (`Europe/Berlin`, daylight
    /// saving followed), `UTC`, or a fixed offset `±HH:MM`.
    pub timezone: String,
    /// `after-hours-access`: more than this many PHI accesses outside
    /// working hours by one user in one window.
    pub after_hours_max: u64,
    pub after_hours_window_minutes: u64,
    /// `prompt-injection-spike`: more than this many attempts in a window.
    pub injection_max: u64,
    pub injection_window_minutes: u64,
    /// `auth-failures`: more than this many failed authentications from
    /// one client address in a window.
    pub auth_failures_max: u64,
    pub auth_failures_window_minutes: u64,
}

impl Default for RawDetection {
    fn default() -> Self {
        RawDetection {
            enabled: true,
            rules: RuleId::ALL.map(RuleId::as_str).join(","),
            poll_ms: 1000,
            batch_max_events: 1000,
            max_listed_events: 20,
            phi_reads_per_hour: 500,
            business_hours: "07:00-19:00".into(),
            business_days: "mon,tue,wed,thu,fri".into(),
            timezone: "UTC".into(),
            after_hours_max: 20,
            after_hours_window_minutes: 1440,
            injection_max: 5,
            injection_window_minutes: 10,
            auth_failures_max: 20,
            auth_failures_window_minutes: 5,
        }
    }
}

/// One detection rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    PhiReadVolume,
    AfterHoursAccess,
    AiOutputPhi,
    PromptInjectionSpike,
    PixelDigestMismatch,
    AuthFailures,
}

impl RuleId {
    pub const ALL: [RuleId; 6] = [
        RuleId::PhiReadVolume,
        RuleId::AfterHoursAccess,
        RuleId::AiOutputPhi,
        RuleId::PromptInjectionSpike,
        RuleId::PixelDigestMismatch,
        RuleId::AuthFailures,
    ];

    /// Its name in settings, alert events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::PhiReadVolume => "phi-read-volume",
            RuleId::AfterHoursAccess => "after-hours-access",
            RuleId::AiOutputPhi => "ai-output-phi",
            RuleId::PromptInjectionSpike => "prompt-injection-spike",
            RuleId::PixelDigestMismatch => "pixel-digest-mismatch",
            RuleId::AuthFailures => "auth-failures",
        }
    }

    pub fn parse(s: &str) -> Option<RuleId> {
        RuleId::ALL.into_iter().find(|r| r.as_str() == s.trim())
    }
}

/// A rule that fires when more than `max` events fall in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountRule {
    pub max: u64,
    /// Windows are consecutive, of this length, counted from
    /// 1970-01-01 00:00 UTC.
    pub window: Duration,
}

/// The site's time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteZone {
    /// The same offset all year.
    Fixed(UtcOffset),
    /// An IANA zone from the tz database built into vellum (not the
    /// host's), so the offset at each instant follows daylight saving.
    Named(jiff::tz::TimeZone),
}

impl SiteZone {
    /// The zone's offset from UTC at the instant `t`.
    pub fn offset_at(&self, t: time::OffsetDateTime) -> UtcOffset {
        match self {
            SiteZone::Fixed(o) => *o,
            SiteZone::Named(tz) => jiff::Timestamp::from_second(t.unix_timestamp())
                .ok()
                .and_then(|ts| UtcOffset::from_whole_seconds(tz.to_offset(ts).seconds()).ok())
                .unwrap_or(UtcOffset::UTC),
        }
    }
}

/// Working hours and days in the site's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessHours {
    pub start: Time,
    /// Exclusive; before `start` means the hours cross midnight.
    pub end: Time,
    pub days: [bool; 7],
    pub zone: SiteZone,
}

impl BusinessHours {
    /// Whether the instant `t` is inside working hours, in the site's local
    /// time at that instant.
    pub fn contains(&self, t: time::OffsetDateTime) -> bool {
        let local = t.to_offset(self.zone.offset_at(t));
        let day = self
            .days
            .get(usize::from(local.weekday().number_days_from_monday()))
            .copied()
            .unwrap_or(false);
        let at = local.time();
        let in_hours = if self.start <= self.end {
            at >= self.start && at < self.end
        } else {
            at >= self.start || at < self.end
        };
        day && in_hours
    }
}

/// Validated `[detection]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionSettings {
    pub enabled: bool,
    pub rules: Vec<RuleId>,
    pub poll: Duration,
    pub batch_max_events: i64,
    pub max_listed_events: usize,
    pub phi_reads: CountRule,
    pub hours: BusinessHours,
    pub after_hours: CountRule,
    pub injection: CountRule,
    pub auth_failures: CountRule,
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// A window of 1 minute to 31 days.
fn window(key: &'static str, minutes: u64) -> Result<Duration, ConfigError> {
    if !(1..=31 * 1440).contains(&minutes) {
        return Err(invalid(
            key,
            "must be between 1 and 44640 minutes (31 days)",
        ));
    }
    Ok(Duration::from_secs(minutes * 60))
}

fn clock(key: &'static str, s: &str) -> Result<Time, ConfigError> {
    let (h, m) = s
        .trim()
        .split_once(':')
        .ok_or_else(|| invalid(key, "times must be HH:MM"))?;
    let h: u8 = h.parse().map_err(|_| invalid(key, "times must be HH:MM"))?;
    let m: u8 = m.parse().map_err(|_| invalid(key, "times must be HH:MM"))?;
    // 24:00 is the end of the day.
    if h == 24 && m == 0 {
        return Ok(Time::MIDNIGHT);
    }
    Time::from_hms(h, m, 0).map_err(|_| invalid(key, "hours 00–23, minutes 00–59"))
}

fn zone(s: &str) -> Result<SiteZone, ConfigError> {
    const KEY: &str = "detection.timezone";
    let s = s.trim();
    if s.eq_ignore_ascii_case("utc") || s == "Z" {
        return Ok(SiteZone::Fixed(UtcOffset::UTC));
    }
    if s.starts_with(['+', '-']) {
        let fmt = time::macros::format_description!("[offset_hour sign:mandatory]:[offset_minute]");
        // Offsets in use run from -12:00 to +14:00.
        return UtcOffset::parse(s, &fmt)
            .ok()
            .filter(|o| (-12..=14).contains(&o.whole_hours()))
            .map(SiteZone::Fixed)
            .ok_or_else(|| {
                invalid(
                    KEY,
                    "a fixed offset must be ±HH:MM between -12:00 and +14:00, such as +01:00",
                )
            });
    }
    // jiff answers a name it does not know with an error, and `Etc/Unknown`
    // with a placeholder zone: both are refused.
    match jiff::tz::TimeZone::get(s) {
        Ok(tz) if !tz.is_unknown() => Ok(SiteZone::Named(tz)),
        _ => Err(invalid(
            KEY,
            format!(
                "unknown time zone `{s}`: use an IANA name such as Europe/Berlin, UTC, or a fixed offset such as +01:00"
            ),
        )),
    }
}

fn weekday(s: &str) -> Option<Weekday> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    })
}

impl DetectionSettings {
    pub fn validate(raw: &RawDetection) -> Result<Self, ConfigError> {
        let mut rules = Vec::new();
        for name in raw.rules.split(',').filter(|s| !s.trim().is_empty()) {
            let r = RuleId::parse(name).ok_or_else(|| {
                invalid(
                    "detection.rules",
                    format!(
                        "unknown rule `{}` (rules: {})",
                        name.trim(),
                        RuleId::ALL.map(RuleId::as_str).join(", ")
                    ),
                )
            })?;
            if !rules.contains(&r) {
                rules.push(r);
            }
        }
        rules.sort();
        let (start, end) = raw
            .business_hours
            .split_once('-')
            .ok_or_else(|| invalid("detection.business_hours", "must be HH:MM-HH:MM"))?;
        let mut days = [false; 7];
        for d in raw
            .business_days
            .split(',')
            .filter(|s| !s.trim().is_empty())
        {
            let w = weekday(d).ok_or_else(|| {
                invalid(
                    "detection.business_days",
                    "days are mon, tue, wed, thu, fri, sat, sun",
                )
            })?;
            if let Some(slot) = days.get_mut(usize::from(w.number_days_from_monday())) {
                *slot = true;
            }
        }
        if raw.poll_ms == 0 {
            return Err(invalid("detection.poll_ms", "must be greater than 0"));
        }
        if raw.batch_max_events == 0 {
            return Err(invalid(
                "detection.batch_max_events",
                "must be greater than 0",
            ));
        }
        if !(1..=1000).contains(&raw.max_listed_events) {
            return Err(invalid(
                "detection.max_listed_events",
                "must be between 1 and 1000",
            ));
        }
        Ok(DetectionSettings {
            enabled: raw.enabled,
            rules,
            poll: Duration::from_millis(raw.poll_ms),
            batch_max_events: i64::try_from(raw.batch_max_events).unwrap_or(i64::MAX),
            max_listed_events: raw.max_listed_events,
            phi_reads: CountRule {
                max: raw.phi_reads_per_hour,
                window: Duration::from_secs(3600),
            },
            hours: BusinessHours {
                start: clock("detection.business_hours", start)?,
                end: clock("detection.business_hours", end)?,
                days,
                zone: zone(&raw.timezone)?,
            },
            after_hours: CountRule {
                max: raw.after_hours_max,
                window: window(
                    "detection.after_hours_window_minutes",
                    raw.after_hours_window_minutes,
                )?,
            },
            injection: CountRule {
                max: raw.injection_max,
                window: window(
                    "detection.injection_window_minutes",
                    raw.injection_window_minutes,
                )?,
            },
            auth_failures: CountRule {
                max: raw.auth_failures_max,
                window: window(
                    "detection.auth_failures_window_minutes",
                    raw.auth_failures_window_minutes,
                )?,
            },
        })
    }

    pub fn runs(&self, rule: RuleId) -> bool {
        self.rules.contains(&rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn defaults_are_valid_and_run_every_rule() {
        let s = DetectionSettings::validate(&RawDetection::default()).unwrap();
        assert_eq!(s.rules, RuleId::ALL.to_vec());
        assert!(s.enabled);
    }

    #[test]
    fn business_hours_follow_the_offset_and_the_days() {
        let raw = RawDetection {
            business_hours: "08:00-18:00".into(),
            timezone: "+02:00".into(),
            ..RawDetection::default()
        };
        let h = DetectionSettings::validate(&raw).unwrap().hours;
        // Wednesday 06:30 UTC is 08:30 at +02:00.
        assert!(h.contains(datetime!(2026-03-11 06:30 UTC)));
        assert!(!h.contains(datetime!(2026-03-11 05:30 UTC)));
        assert!(!h.contains(datetime!(2026-03-11 16:00 UTC)));
        // Saturday.
        assert!(!h.contains(datetime!(2026-03-14 09:00 UTC)));
    }

    #[test]
    fn a_named_zone_follows_daylight_saving() {
        let raw = RawDetection {
            business_hours: "08:00-18:00".into(),
            timezone: "Europe/Berlin".into(),
            ..RawDetection::default()
        };
        let h = DetectionSettings::validate(&raw).unwrap().hours;
        // Friday 27 March 2026, CET (+01:00): 07:30 UTC is 08:30 local.
        assert!(h.contains(datetime!(2026-03-27 07:30 UTC)));
        assert!(!h.contains(datetime!(2026-03-27 06:30 UTC)));
        // Monday 30 March, after the change to CEST (+02:00): 06:30 UTC is
        // already 08:30, and 16:30 UTC is 18:30, after hours.
        assert!(h.contains(datetime!(2026-03-30 06:30 UTC)));
        assert!(!h.contains(datetime!(2026-03-30 16:30 UTC)));
        // Monday 26 October, back on CET: 06:30 UTC is 07:30, before hours.
        assert!(!h.contains(datetime!(2026-10-26 06:30 UTC)));
        assert!(h.contains(datetime!(2026-10-26 16:30 UTC)));
        // Names are case-insensitive; a fixed offset still works.
        for tz in ["europe/berlin", "UTC", "-05:00"] {
            let raw = RawDetection {
                timezone: tz.into(),
                ..RawDetection::default()
            };
            assert!(DetectionSettings::validate(&raw).is_ok(), "{tz}");
        }
    }

    #[test]
    fn an_unknown_zone_is_refused_with_its_name() {
        for tz in ["Europe/Atlantis", "Etc/Unknown", "+25:00", "CEST+2"] {
            let raw = RawDetection {
                timezone: tz.into(),
                ..RawDetection::default()
            };
            match DetectionSettings::validate(&raw) {
                Err(ConfigError::Invalid { key, reason }) => {
                    assert_eq!(key, "detection.timezone");
                    assert!(reason.contains(tz) || tz.starts_with('+'), "{reason}");
                }
                other => panic!("{tz}: {other:?}"),
            }
        }
    }

    #[test]
    fn night_shifts_cross_midnight() {
        let raw = RawDetection {
            business_hours: "22:00-06:00".into(),
            business_days: "mon,tue,wed,thu,fri,sat,sun".into(),
            ..RawDetection::default()
        };
        let h = DetectionSettings::validate(&raw).unwrap().hours;
        assert!(h.contains(datetime!(2026-03-11 23:00 UTC)));
        assert!(h.contains(datetime!(2026-03-11 05:59 UTC)));
        assert!(!h.contains(datetime!(2026-03-11 12:00 UTC)));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (raw, key) in [
            (
                RawDetection {
                    rules: "phi-read-volume,nope".into(),
                    ..RawDetection::default()
                },
                "detection.rules",
            ),
            (
                RawDetection {
                    timezone: "Europe/Atlantis".into(),
                    ..RawDetection::default()
                },
                "detection.timezone",
            ),
            (
                RawDetection {
                    business_hours: "7-19".into(),
                    ..RawDetection::default()
                },
                "detection.business_hours",
            ),
            (
                RawDetection {
                    injection_window_minutes: 0,
                    ..RawDetection::default()
                },
                "detection.injection_window_minutes",
            ),
            (
                RawDetection {
                    max_listed_events: 0,
                    ..RawDetection::default()
                },
                "detection.max_listed_events",
            ),
        ] {
            match DetectionSettings::validate(&raw) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{other:?}"),
            }
        }
    }
}
