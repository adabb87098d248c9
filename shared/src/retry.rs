//! The retry schedule: how long to wait after each failed attempt.

use std::time::Duration;

use rand::Rng;

/// SQS refuses a visibility timeout above 12 hours, so no single step may be longer.
pub const MAX_STEP: Duration = Duration::from_secs(12 * 60 * 60);

/// Each delay is stretched or shrunk by up to this fraction so that a burst of
/// failures does not come back as a burst.
pub const JITTER: f64 = 0.2;

/// The default schedule, Svix's: 8 attempts over about 27.5 hours.
pub const DEFAULT: &str = "5s,5m,30m,2h,5h,10h,10h";

/// Receives a job may use beyond its attempts before SQS moves it to the DLQ on its
/// own: the dispatcher parks a job after its last attempt, and `maxReceiveCount` is
/// only a safety net. The extra receives are those no attempt counted: a crashed
/// invocation, a visibility change that failed, a DLQ send tried again.
pub const RECEIVE_MARGIN: u32 = 5;

/// How far the dispatcher's clock may be behind the queue's before a receive
/// that came on time looks early (see [`attempt_number`]).
pub const CLOCK_TOLERANCE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("`{0}` is not a duration: use a whole number followed by ms, s, m or h, e.g. 5s or 2h")]
    BadStep(String),
    #[error("`{0}` is longer than 12h, the longest delay SQS allows for one step")]
    TooLong(String),
}

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>) -> Self {
        Self { delays }
    }

    /// Parses `5s,5m,30m,2h`; an empty string is a schedule with no retries.
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let delays = text
            .split(',')
            .map(str::trim)
            .filter(|step| !step.is_empty())
            .map(parse_step)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { delays })
    }

    /// How many attempts a job gets in all: the first one plus one per delay.
    pub fn attempts(&self) -> u32 {
        self.delays.len() as u32 + 1
    }

    /// The delivery queue's `maxReceiveCount`: the attempts plus [`RECEIVE_MARGIN`].
    pub fn max_receive_count(&self) -> u32 {
        self.attempts() + RECEIVE_MARGIN
    }

    /// The delay after failed attempt number `attempt` (1-based), or `None` when it was the last.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        let index = usize::try_from(attempt).ok()?.checked_sub(1)?;
        self.delays.get(index).copied()
    }

    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self::parse(DEFAULT).expect("the default schedule parses")
    }
}

/// A duration as the settings write it: a whole number and a unit, `ms`, `s`, `m`,
/// `h` or `d` (`250ms`, `5m`, `5d`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = |per: u64| Duration::from_secs(number.saturating_mul(per));
    match unit {
        "ms" => Some(Duration::from_millis(number)),
        "s" => Some(seconds(1)),
        "m" => Some(seconds(60)),
        "h" => Some(seconds(3600)),
        "d" => Some(seconds(86_400)),
        _ => None,
    }
}

fn parse_step(step: &str) -> Result<Duration, ScheduleError> {
    let delay = parse_duration(step).ok_or_else(|| ScheduleError::BadStep(step.to_string()))?;
    if delay > MAX_STEP {
        return Err(ScheduleError::TooLong(step.to_string()));
    }
    Ok(delay)
}

/// Spreads `delay` by ±[`JITTER`], never past [`MAX_STEP`]. `unit` is a number in `[0, 1)`.
pub fn jittered(delay: Duration, unit: f64) -> Duration {
    let factor = 1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0);
    delay.mul_f64(factor).min(MAX_STEP)
}

/// [`jittered`] with a random spread.
pub fn jittered_random(delay: Duration) -> Duration {
    jittered(delay, rand::rng().random::<f64>())
}

/// Why an attempt failed, as far as the next delay cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No answer within the request timeout.
    Timeout,
    /// 429 Too Many Requests.
    TooManyRequests,
    /// 503 Service Unavailable.
    Unavailable,
    /// Any other status or error.
    Other,
}

impl FailureKind {
    pub fn of_status(status: u16) -> Self {
        match status {
            429 => Self::TooManyRequests,
            503 => Self::Unavailable,
            _ => Self::Other,
        }
    }
}

/// The delay before the attempt after failed attempt number `attempt`, or `None`
/// when it was the last. `unit` in `[0, 1)` picks the jitter.
///
/// A receiver that timed out or said 429 is overloaded, so its jitter only ever
/// lengthens the step; a `Retry-After` on 429 or 503 stretches it further. No
/// step passes [`MAX_STEP`], the longest SQS can hide a message.
pub fn next_delay(
    schedule: &RetrySchedule,
    attempt: u32,
    kind: FailureKind,
    retry_after: Option<Duration>,
    unit: f64,
) -> Option<Duration> {
    let step = schedule.delay_after(attempt)?;
    let mut delay = jittered(step, unit);
    if matches!(kind, FailureKind::Timeout | FailureKind::TooManyRequests) {
        delay = delay.max(step);
    }
    if matches!(
        kind,
        FailureKind::TooManyRequests | FailureKind::Unavailable
    ) && let Some(asked) = retry_after
    {
        delay = delay.max(asked);
    }
    Some(delay.min(MAX_STEP))
}

/// The number of the attempt a receive makes. It is the receive count, but never
/// further along the schedule than the time since the job's first receive allows
/// (each step at its shortest jitter), and never past the last attempt.
///
/// A receive count also rises when a job comes back early: after a crash, or
/// after a visibility change that failed. Counting by the clock as well keeps such
/// a receive from using up a step, so a job reaches its last attempt no sooner
/// than the schedule says. A receive beyond the last attempt is the last attempt
/// once more. Without the first receive's time, the receive count alone decides.
pub fn attempt_number(
    schedule: &RetrySchedule,
    receive_count: u32,
    since_first_receive: Option<Duration>,
) -> u32 {
    attempt_number_after(schedule, 0, receive_count, since_first_receive)
}

/// [`attempt_number`] for a job that made `earlier` attempts on another queue before
/// this one, whose receive count and first receive are this queue's: the schedule
/// goes on from there.
pub fn attempt_number_after(
    schedule: &RetrySchedule,
    earlier: u32,
    receive_count: u32,
    since_first_receive: Option<Duration>,
) -> u32 {
    let earlier = earlier.min(schedule.attempts() - 1);
    let by_count = earlier + receive_count.clamp(1, schedule.attempts() - earlier);
    let Some(elapsed) = since_first_receive else {
        return by_count;
    };
    let mut earliest = Duration::ZERO;
    let mut due = earlier + 1;
    for step in schedule.delays().iter().skip(earlier as usize) {
        earliest += step.mul_f64(1.0 - JITTER);
        if earliest > elapsed + CLOCK_TOLERANCE {
            break;
        }
        due += 1;
    }
    by_count.min(due)
}

/// Runs `op` up to `tries` times, pausing `first_pause` after the first failure and
/// twice as long after each next one; the last error if every try fails.
pub async fn with_backoff<T, E, F, Fut>(
    tries: u32,
    first_pause: Duration,
    mut op: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut pause = first_pause;
    let mut tried = 1;
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(error) if tried >= tries => return Err(error),
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause *= 2;
                tried += 1;
            }
        }
    }
}

/// Reads a `Retry-After` value at `now` (unix seconds): delay-seconds, or an HTTP date.
/// A date in the past means "now"; anything unreadable is ignored.
pub fn parse_retry_after(value: &str, now: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, format)
        .ok()?
        .assume_utc()
        .unix_timestamp();
    Some(Duration::from_secs(u64::try_from(at - now).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_is_eight_attempts_over_about_27_hours() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.attempts(), 8);
        let total: Duration = schedule.delays().iter().sum();
        assert_eq!(
            total,
            Duration::from_secs(5 + 5 * 60 + 30 * 60 + (2 + 5 + 10 + 10) * 3600)
        );
    }

    #[test]
    fn the_queue_parks_a_job_only_a_margin_after_its_last_attempt() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.max_receive_count(), 8 + RECEIVE_MARGIN);
        const { assert!(RECEIVE_MARGIN >= 1) };
        assert_eq!(
            RetrySchedule::parse("").unwrap().max_receive_count(),
            1 + RECEIVE_MARGIN
        );
    }

    #[test]
    fn the_attempt_number_is_the_receive_count_when_the_job_came_on_time() {
        let schedule = RetrySchedule::parse("10s,100s").unwrap();
        let secs = Duration::from_secs;
        // Each receive after at least the shortest jittered steps: 8 s, then 8 + 80 s.
        assert_eq!(attempt_number(&schedule, 1, Some(secs(0))), 1);
        assert_eq!(attempt_number(&schedule, 2, Some(secs(8))), 2);
        assert_eq!(attempt_number(&schedule, 3, Some(secs(88))), 3);
        // A clock a little behind the queue's does not make an on-time receive early.
        assert_eq!(
            attempt_number(&schedule, 2, Some(secs(8) - CLOCK_TOLERANCE)),
            2
        );
        // Without a first receive time, the count decides.
        assert_eq!(attempt_number(&schedule, 2, None), 2);
        assert_eq!(attempt_number(&schedule, 0, None), 1);
    }

    #[test]
    fn an_early_receive_does_not_use_up_a_step() {
        let schedule = RetrySchedule::parse("10s,100s").unwrap();
        let secs = Duration::from_secs;
        // Back after a crash or a failed visibility change, before the step ran out.
        assert_eq!(attempt_number(&schedule, 2, Some(secs(3))), 1);
        assert_eq!(attempt_number(&schedule, 3, Some(secs(30))), 2);
        // Crashes in a row: the count is far ahead, the clock is not.
        assert_eq!(attempt_number(&schedule, 7, Some(secs(1))), 1);
    }

    #[test]
    fn a_moved_job_goes_on_from_its_earlier_attempts() {
        let schedule = RetrySchedule::parse("10s,100s,1000s").unwrap();
        let secs = Duration::from_secs;
        // Two attempts on the delivery queue; its first receive on the slow lane is the third.
        assert_eq!(attempt_number_after(&schedule, 2, 1, Some(secs(0))), 3);
        // Its next comes after the third step (1000 s, 800 s at the shortest), not the first.
        assert_eq!(attempt_number_after(&schedule, 2, 2, Some(secs(30))), 3);
        assert_eq!(attempt_number_after(&schedule, 2, 2, Some(secs(800))), 4);
        assert_eq!(attempt_number_after(&schedule, 2, 9, None), 4);
        // More earlier attempts than the schedule has: the last attempt.
        assert_eq!(attempt_number_after(&schedule, 7, 1, None), 4);
        assert_eq!(attempt_number_after(&schedule, 0, 2, Some(secs(8))), 2);
    }

    #[test]
    fn a_receive_past_the_schedule_is_the_last_attempt() {
        let schedule = RetrySchedule::parse("10s,100s").unwrap();
        let day = Duration::from_secs(86_400);
        assert_eq!(attempt_number(&schedule, 4, Some(day)), 3);
        assert_eq!(attempt_number(&schedule, 9, Some(day)), 3);
        assert_eq!(attempt_number(&schedule, 9, None), 3);
        assert_eq!(
            attempt_number(&RetrySchedule::parse("").unwrap(), 3, None),
            1
        );
    }

    #[tokio::test]
    async fn with_backoff_tries_until_success_or_the_last_try() {
        let pause = Duration::from_millis(1);
        let mut calls = 0;
        let result: Result<u32, &str> = with_backoff(4, pause, || {
            calls += 1;
            let call = calls;
            async move { if call < 3 { Err("refused") } else { Ok(call) } }
        })
        .await;
        assert_eq!(result, Ok(3));

        let mut calls = 0;
        let result: Result<(), u32> = with_backoff(3, pause, || {
            calls += 1;
            let call = calls;
            async move { Err(call) }
        })
        .await;
        assert_eq!(result, Err(3), "the last error, after three tries");
    }

    #[test]
    fn delay_after_each_attempt() {
        let schedule = RetrySchedule::parse("1s, 2m,3h").unwrap();
        assert_eq!(schedule.delay_after(0), None);
        assert_eq!(schedule.delay_after(1), Some(Duration::from_secs(1)));
        assert_eq!(schedule.delay_after(2), Some(Duration::from_secs(120)));
        assert_eq!(schedule.delay_after(3), Some(Duration::from_secs(3 * 3600)));
        assert_eq!(schedule.delay_after(4), None);
        assert_eq!(
            RetrySchedule::parse("250ms").unwrap().delays(),
            [Duration::from_millis(250)]
        );
        assert_eq!(RetrySchedule::parse("").unwrap().attempts(), 1);
    }

    #[test]
    fn refuses_malformed_and_overlong_steps() {
        for (text, error) in [
            ("5", ScheduleError::BadStep("5".into())),
            ("s", ScheduleError::BadStep("s".into())),
            ("5x", ScheduleError::BadStep("5x".into())),
            ("1d", ScheduleError::TooLong("1d".into())),
            ("-5s", ScheduleError::BadStep("-5s".into())),
            ("1.5h", ScheduleError::BadStep("1.5h".into())),
            ("13h", ScheduleError::TooLong("13h".into())),
        ] {
            assert_eq!(RetrySchedule::parse(text), Err(error), "{text}");
        }
        assert!(RetrySchedule::parse("12h").is_ok());
    }

    #[test]
    fn durations_read_in_every_unit_of_the_settings() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("5d"), Some(Duration::from_secs(5 * 86_400)));
        for bad in ["", "5", "d", "5 d", "5days", "-1s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn next_delay_follows_the_schedule_with_jitter() {
        let schedule = RetrySchedule::parse("10s,1m").unwrap();
        let secs = Duration::from_secs;
        assert_eq!(
            next_delay(&schedule, 1, FailureKind::Other, None, 0.0),
            Some(secs(8))
        );
        assert_eq!(
            next_delay(&schedule, 2, FailureKind::Other, None, 0.5),
            Some(secs(60))
        );
        // After the last attempt there is no next one, whatever the receiver asks.
        assert_eq!(
            next_delay(
                &schedule,
                3,
                FailureKind::TooManyRequests,
                Some(secs(5)),
                0.5
            ),
            None
        );
    }

    #[test]
    fn timeouts_and_429s_never_retry_sooner_than_the_schedule() {
        let schedule = RetrySchedule::parse("10s").unwrap();
        let secs = Duration::from_secs;
        for kind in [FailureKind::Timeout, FailureKind::TooManyRequests] {
            assert_eq!(next_delay(&schedule, 1, kind, None, 0.0), Some(secs(10)));
            assert_eq!(next_delay(&schedule, 1, kind, None, 0.75), Some(secs(11)));
        }
    }

    #[test]
    fn retry_after_stretches_429_and_503_only() {
        let schedule = RetrySchedule::parse("10s").unwrap();
        let secs = Duration::from_secs;
        let stretched = |kind, asked| next_delay(&schedule, 1, kind, Some(asked), 0.5);
        assert_eq!(
            stretched(FailureKind::TooManyRequests, secs(90)),
            Some(secs(90))
        );
        assert_eq!(
            stretched(FailureKind::Unavailable, secs(90)),
            Some(secs(90))
        );
        // It stretches, never shortens.
        assert_eq!(stretched(FailureKind::Unavailable, secs(1)), Some(secs(10)));
        assert_eq!(stretched(FailureKind::Other, secs(90)), Some(secs(10)));
        assert_eq!(stretched(FailureKind::Timeout, secs(90)), Some(secs(10)));
        // Never past what SQS allows.
        assert_eq!(
            stretched(FailureKind::TooManyRequests, secs(48 * 3600)),
            Some(MAX_STEP)
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:51:37 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for unreadable in ["soon", "-5", "1.5", ""] {
            assert_eq!(parse_retry_after(unreadable, now), None, "{unreadable}");
        }
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_the_cap() {
        let delay = Duration::from_secs(100);
        assert_eq!(jittered(delay, 0.0), Duration::from_secs(80));
        assert_eq!(jittered(delay, 0.5), Duration::from_secs(100));
        assert!(jittered(delay, 0.999_999) <= Duration::from_secs(120));
        assert_eq!(jittered(MAX_STEP, 0.99), MAX_STEP);
        for _ in 0..100 {
            let d = jittered_random(delay);
            assert!(d >= Duration::from_secs(80) && d <= Duration::from_secs(120));
        }
    }
}
