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

/// One attempt: begun, then settled with `outcome` if let through.
fn attempt(
    t: &LoginThrottle,
    a: IpAddr,
    u: UserKey,
    outcome: Outcome,
    now: Instant,
) -> Result<(), Throttled> {
    t.begin(a, u, now)?;
    t.finish(a, u, outcome, now);
    Ok(())
}

#[test]
fn a_guesser_at_one_account_is_slowed_and_nobody_else() {
    let t = LoginThrottle::new(&config());
    let (guesser, elsewhere) = (ip("192.0.2.1"), ip("198.51.100.7"));
    let (victim, other) = (t.user(b"alice"), t.user(b"bob"));
    let now = Instant::now();
    for _ in 0..5 {
        assert_eq!(attempt(&t, guesser, victim, Outcome::Failure, now), Ok(()));
    }
    let refused = t.begin(guesser, victim, now).unwrap_err();
    assert!(!refused.address_wide);
    // One more every window / failures (3 minutes).
    assert_eq!(refused.retry_after, 180);
    assert_eq!(
        t.begin(guesser, t.user(b" ALICE "), now),
        Err(refused),
        "the same user"
    );
    let wide = "ＡＬＩＣＥ".as_bytes();
    assert_eq!(
        t.begin(guesser, t.user(wide), now),
        Err(refused),
        "full-width"
    );
    // The address logs in another user; the victim logs in from elsewhere.
    assert_eq!(attempt(&t, guesser, other, Outcome::Success, now), Ok(()));
    assert_eq!(
        attempt(&t, elsewhere, victim, Outcome::Success, now),
        Ok(())
    );
    // Three minutes on: one more try.
    let later = now + Duration::from_secs(180);
    assert_eq!(
        attempt(&t, guesser, victim, Outcome::Failure, later),
        Ok(())
    );
    assert!(t.begin(guesser, victim, later).is_err());
    assert_eq!(t.throttled(later), (1, 0));
}

/// Attempts sent at once are counted as they begin: no more than the
/// limit pass before the first answer; an attempt no node answered is
/// given back.
#[test]
fn concurrent_attempts_cannot_outrun_the_count() {
    let t = LoginThrottle::new(&config());
    let (a, u) = (ip("192.0.2.9"), t.user(b"erin"));
    let now = Instant::now();
    let passed = (0..100).filter(|_| t.begin(a, u, now).is_ok()).count();
    assert_eq!(passed, 5);
    let t = LoginThrottle::new(&config());
    for _ in 0..20 {
        assert_eq!(attempt(&t, a, u, Outcome::Other, now), Ok(()));
    }
    assert!(t.begin(a, u, now).is_ok(), "given back");
}

#[test]
fn a_success_clears_its_pair_and_never_counts_against_anyone() {
    let t = LoginThrottle::new(&config());
    let a = ip("192.0.2.1");
    let u = t.user(b"carol");
    let now = Instant::now();
    for _ in 0..4 {
        attempt(&t, a, u, Outcome::Failure, now).unwrap();
    }
    attempt(&t, a, u, Outcome::Success, now).unwrap();
    for _ in 0..4 {
        attempt(&t, a, u, Outcome::Failure, now).unwrap();
    }
    assert_eq!(t.begin(a, u, now), Ok(()), "the success started over");
    // Successes alone, many: never refused.
    for i in 0..10_000u32 {
        attempt(&t, a, t.user(&i.to_le_bytes()), Outcome::Success, now).unwrap();
    }
    assert_eq!(t.begin(a, t.user(b"dave"), now), Ok(()));
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
        if attempt(&t, sprayer, user, Outcome::Failure, now).is_err() {
            break;
        }
        tried += 1;
    }
    assert_eq!(tried, 30, "cut off at address_failures");
    let refused = t.begin(sprayer, t.user(b"someone"), now).unwrap_err();
    assert!(refused.address_wide, "{refused:?}");
    // Told to come back once it would pass (to a tenth of the window),
    // not while the window it failed in lasts.
    assert!((900..=990).contains(&refused.retry_after), "{refused:?}");
    let still = now + Duration::from_secs(899);
    assert!(t.begin(sprayer, t.user(b"y"), still).is_err());
    // A campus: 1,100 users a minute for ten minutes, one in ten
    // mistyping their password once before getting it right (1,210
    // attempts a minute).
    for minute in 0..10u32 {
        let at = now + Duration::from_secs(60 * u64::from(minute));
        for i in 0..1100u32 {
            let user = t.user(format!("student{}", minute * 1100 + i).as_bytes());
            if i % 10 == 0 {
                let r = attempt(&t, campus, user, Outcome::Failure, at);
                assert_eq!(r, Ok(()), "minute {minute}, user {i}");
            }
            let r = attempt(&t, campus, user, Outcome::Success, at);
            assert_eq!(r, Ok(()), "minute {minute}, user {i}");
        }
    }
    assert_eq!(
        t.throttled(now + Duration::from_secs(600)).1,
        1,
        "only the sprayer"
    );
    // The sprayer's window passes: it may try again.
    assert_eq!(
        t.begin(sprayer, t.user(b"x"), now + Duration::from_secs(1800)),
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
        attempt(
            &t,
            a,
            t.user(format!("s{i}").as_bytes()),
            Outcome::Success,
            now,
        )
        .unwrap();
    }
    for i in 0..100u32 {
        attempt(
            &t,
            a,
            t.user(format!("f{i}").as_bytes()),
            Outcome::Failure,
            now,
        )
        .unwrap();
    }
    assert!(t.begin(a, t.user(b"next"), now).unwrap_err().address_wide);
}

#[test]
fn limits_off_count_nothing() {
    let mut c = config();
    (c.login_failures, c.address_failures) = (0, 0);
    let t = LoginThrottle::new(&c);
    let now = Instant::now();
    for _ in 0..100 {
        attempt(&t, ip("192.0.2.1"), 1, Outcome::Failure, now).unwrap();
    }
    assert!(t.is_empty());
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
            let _ = attempt(&t, addr, u64::from(user), outcome, now);
            let s = t.lock();
            prop_assert!(s.pairs.len() <= 1000 && s.addresses.len() <= 1000);
        }
    }
}
