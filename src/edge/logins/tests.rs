use super::*;
use proptest::prelude::*;

fn config() -> RateLimit {
    RateLimit {
        login_failures: 5,
        login_window: Duration::from_secs(900),
        address_failures: 30,
        address_failure_share: 0.8,
        address_failure_ceiling: 5000,
        ..RateLimit::default()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn a_guesser_at_one_account_is_slowed_and_nobody_else() {
    let t = LoginThrottle::new(&config());
    let (guesser, elsewhere) = (ip("192.0.2.1"), ip("198.51.100.7"));
    let (victim, other) = (t.user(b"alice"), t.user(b"bob"));
    let now = Instant::now();
    for _ in 0..5 {
        assert_eq!(t.check(guesser, victim, now), Ok(()));
        t.record(guesser, victim, Outcome::Failure, now);
    }
    let refused = t.check(guesser, victim, now).unwrap_err();
    assert!(!refused.address_wide);
    // One more every window / failures (3 minutes).
    assert_eq!(refused.retry_after, 180);
    assert_eq!(
        t.check(guesser, t.user(b" ALICE "), now),
        Err(refused),
        "the same user"
    );
    // The address logs in another user; the victim logs in from elsewhere.
    assert_eq!(t.check(guesser, other, now), Ok(()));
    assert_eq!(t.check(elsewhere, victim, now), Ok(()));
    // Three minutes on: one more try.
    let later = now + Duration::from_secs(180);
    assert_eq!(t.check(guesser, victim, later), Ok(()));
    t.record(guesser, victim, Outcome::Failure, later);
    assert!(t.check(guesser, victim, later).is_err());
    assert_eq!(t.throttled(later), (1, 0));
}

#[test]
fn a_success_clears_its_pair_and_never_counts_against_anyone() {
    let t = LoginThrottle::new(&config());
    let a = ip("192.0.2.1");
    let u = t.user(b"carol");
    let now = Instant::now();
    for _ in 0..4 {
        t.record(a, u, Outcome::Failure, now);
    }
    t.record(a, u, Outcome::Success, now);
    for _ in 0..4 {
        t.record(a, u, Outcome::Failure, now);
    }
    assert_eq!(t.check(a, u, now), Ok(()), "the success started over");
    // Successes alone, many: never refused.
    for i in 0..10_000u32 {
        t.record(a, t.user(&i.to_le_bytes()), Outcome::Success, now);
    }
    assert_eq!(t.check(a, t.user(b"dave"), now), Ok(()));
}

#[test]
fn a_sprayer_is_cut_off_and_a_campus_is_not() {
    let t = LoginThrottle::new(&config());
    let (sprayer, campus) = (ip("203.0.113.9"), ip("192.0.2.77"));
    let now = Instant::now();
    // One password over many accounts: all failures.
    let mut tried = 0;
    for i in 0..300u32 {
        let user = t.user(format!("user{i}").as_bytes());
        if t.check(sprayer, user, now).is_err() {
            break;
        }
        t.record(sprayer, user, Outcome::Failure, now);
        tried += 1;
    }
    assert_eq!(tried, 30, "cut off at address_failures");
    let refused = t.check(sprayer, t.user(b"someone"), now).unwrap_err();
    assert!(refused.address_wide && refused.retry_after <= 900);
    // A campus: 1,100 users a minute for ten minutes, one in ten
    // mistyping their password once before getting it right (1,210
    // attempts a minute).
    for minute in 0..10u32 {
        let at = now + Duration::from_secs(60 * u64::from(minute));
        for i in 0..1100u32 {
            let user = t.user(format!("student{}", minute * 1100 + i).as_bytes());
            if i % 10 == 0 {
                assert_eq!(
                    t.check(campus, user, at),
                    Ok(()),
                    "minute {minute}, user {i}"
                );
                t.record(campus, user, Outcome::Failure, at);
            }
            assert_eq!(
                t.check(campus, user, at),
                Ok(()),
                "minute {minute}, user {i}"
            );
            t.record(campus, user, Outcome::Success, at);
        }
    }
    assert_eq!(
        t.throttled(now + Duration::from_secs(600)).1,
        1,
        "only the sprayer"
    );
    // The sprayer's window passes: it may try again.
    assert_eq!(
        t.check(sprayer, t.user(b"x"), now + Duration::from_secs(1800)),
        Ok(())
    );
}

#[test]
fn past_the_ceiling_an_address_is_cut_off_whatever_its_successes() {
    let mut c = config();
    c.address_failure_ceiling = 100;
    let t = LoginThrottle::new(&c);
    let a = ip("192.0.2.5");
    let now = Instant::now();
    for i in 0..1000u32 {
        t.record(a, t.user(format!("s{i}").as_bytes()), Outcome::Success, now);
    }
    for i in 0..100u32 {
        t.record(a, t.user(format!("f{i}").as_bytes()), Outcome::Failure, now);
    }
    assert!(t.check(a, t.user(b"next"), now).unwrap_err().address_wide);
}

#[test]
fn limits_off_count_nothing() {
    let mut c = config();
    (c.login_failures, c.address_failures) = (0, 0);
    let t = LoginThrottle::new(&c);
    let now = Instant::now();
    for _ in 0..100 {
        t.record(ip("192.0.2.1"), 1, Outcome::Failure, now);
    }
    assert!(t.is_empty());
    assert_eq!(t.check(ip("192.0.2.1"), 1, now), Ok(()));
}

proptest! {
    /// Whatever arrives, the stores hold at most `max_clients` entries each.
    #[test]
    fn the_stores_stay_bounded(attempts in proptest::collection::vec((any::<u32>(), any::<u16>(), any::<bool>()), 1..3000)) {
        let c = RateLimit { max_clients: 1000, ..config() };
        let t = LoginThrottle::new(&c);
        let now = Instant::now();
        for (addr, user, failed) in attempts {
            let addr = IpAddr::from(std::net::Ipv4Addr::from(addr));
            let outcome = if failed { Outcome::Failure } else { Outcome::Success };
            t.record(addr, u64::from(user), outcome, now);
            let s = t.lock();
            prop_assert!(s.pairs.len() <= 1000 && s.addresses.len() <= 1000);
        }
    }
}
