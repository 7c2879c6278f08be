//! Enrollment requests and amendments (§7): what kind of request, and where it stands.

crate::closed_set! {
    /// What a request asks for.
    EnrollmentKind ("request type") {
        /// A new agent.
        Enroll = "enroll",
        /// More scopes for an existing agent.
        Amendment = "amendment",
    }
}

crate::closed_set! {
    /// Where a request stands: `pending` until decided, then `approved` (the agent exists, its
    /// credentials not yet picked up), `claimed` (picked up once), `rejected` or `expired`.
    EnrollmentStatus ("request status") {
        /// Waiting for a person or a policy.
        Pending = "pending",
        /// Approved; an enrollment's credentials wait for their pickup.
        Approved = "approved",
        /// Approved and picked up.
        Claimed = "claimed",
        /// Refused, with a reason.
        Rejected = "rejected",
        /// Undecided, or not picked up, in time.
        Expired = "expired",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_statuses_round_trip_through_their_names() {
        for kind in EnrollmentKind::ALL {
            assert_eq!(kind.as_str().parse::<EnrollmentKind>(), Ok(kind));
        }
        for status in EnrollmentStatus::ALL {
            assert_eq!(status.as_str().parse::<EnrollmentStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_value(status).ok(),
                Some(serde_json::Value::from(status.as_str()))
            );
        }
        assert!("enrollment".parse::<EnrollmentKind>().is_err());
    }
}
