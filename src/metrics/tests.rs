//! The label tables follow the enums they are indexed by.

use super::*;

#[test]
fn label_tables_follow_the_enums() {
    for (i, r) in RULES.iter().enumerate() {
        assert_eq!(*r as usize, i);
    }
    let causes = [
        Cause::NoValue,
        Cause::NotTicket,
        Cause::TooLong,
        Cause::UnknownSuffix,
        Cause::UnknownRoute,
        Cause::NotLearned,
        Cause::Unusable(0),
        Cause::UnknownMember,
        Cause::BadRouteCookie,
    ];
    for (i, c) in causes.into_iter().enumerate() {
        assert_eq!(cause_index(c), i, "{c:?} is {}", CAUSES[i]);
    }
    for (i, f) in [
        Failure::Connect,
        Failure::Send,
        Failure::Timeout,
        Failure::Queue,
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(f as usize, i);
    }
    use Refusal::*;
    let refusals = [
        ConnectionsPerIp,
        ProxyHeader,
        RateLimit,
        LoginRateLimit,
        Host,
        BadTarget,
        UriTooLong,
        H2Resets,
        SendTimeout,
        ClientCert,
        LoginThrottled,
    ];
    for (i, r) in refusals.into_iter().enumerate() {
        assert_eq!(r as usize, i, "{r:?} is {}", REFUSALS[i]);
    }
}
