//! The alarm state machine of one rule (pure), after ISA-18.2's alarm states
//! reduced to four:
//!
//! ```text
//!            raise                 acknowledge
//!  normal ─────────► active ───────────────────► acknowledged
//!    ▲  ▲              │ clear                        │ clear
//!    │  │ acknowledge  ▼                              │
//!    │  └──── cleared_unacknowledged ◄── (raise: active again)
//!    └────────────────────────────────────────────────┘
//! ```
//!
//! `active`: the condition holds, nobody acknowledged it yet.
//! `acknowledged`: it holds, an operator acknowledged it. `cleared_unacknowledged`:
//! it no longer holds but nobody acknowledged it (it stays visible until
//! acknowledged). `normal`: nothing to show. Every change is one
//! [`Transition`], recorded as an event of kind `alarm`.

/// Where an alarm is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmState {
    /// Nothing to show.
    Normal,
    /// The condition holds, not acknowledged.
    Active,
    /// The condition holds, acknowledged.
    Acknowledged,
    /// The condition cleared before anyone acknowledged it.
    ClearedUnacknowledged,
}

impl AlarmState {
    /// `normal`, `active`, `acknowledged`, `cleared_unacknowledged`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Normal => "normal",
            AlarmState::Active => "active",
            AlarmState::Acknowledged => "acknowledged",
            AlarmState::ClearedUnacknowledged => "cleared_unacknowledged",
        }
    }
}

/// What happened to an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The condition turned true (after its on-delay).
    Raised,
    /// The condition turned false (after its off-delay).
    Cleared,
    /// An operator acknowledged it.
    Acknowledged,
}

impl Transition {
    /// `raised`, `cleared`, `acknowledged`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Raised => "raised",
            Transition::Cleared => "cleared",
            Transition::Acknowledged => "acknowledged",
        }
    }
}

/// A transition with the states before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// What happened.
    pub transition: Transition,
    /// State before.
    pub from: AlarmState,
    /// State after.
    pub to: AlarmState,
}

impl AlarmState {
    /// The state after `t`, or `None` when `t` does not apply (raising an
    /// active alarm, clearing a normal one, acknowledging one with nothing
    /// to acknowledge).
    pub fn apply(self, t: Transition) -> Option<Change> {
        use AlarmState::*;
        let to = match (self, t) {
            (Normal | ClearedUnacknowledged, Transition::Raised) => Active,
            (Active, Transition::Cleared) => ClearedUnacknowledged,
            (Acknowledged, Transition::Cleared) => Normal,
            (Active, Transition::Acknowledged) => Acknowledged,
            (ClearedUnacknowledged, Transition::Acknowledged) => Normal,
            _ => return None,
        };
        Some(Change { transition: t, from: self, to })
    }
}

#[cfg(test)]
mod tests {
    use super::AlarmState::{Acknowledged as Acked, Active, ClearedUnacknowledged, Normal};
    use super::Transition::{Acknowledged as Ack, Cleared, Raised};

    #[test]
    fn the_four_states_and_what_does_not_apply() {
        let path = |start: super::AlarmState, ts: &[super::Transition]| ts.iter().try_fold(start, |s, t| s.apply(*t).map(|c| c.to));
        assert_eq!(path(Normal, &[Raised, Ack, Cleared]), Some(Normal));
        assert_eq!(path(Normal, &[Raised, Cleared]), Some(ClearedUnacknowledged));
        assert_eq!(path(Normal, &[Raised, Cleared, Ack]), Some(Normal));
        assert_eq!(path(Normal, &[Raised, Cleared, Raised]), Some(Active), "raised again before anyone acknowledged");
        assert_eq!(Normal.apply(Cleared), None);
        assert_eq!(Normal.apply(Ack), None);
        assert_eq!(Active.apply(Raised), None);
        assert_eq!(Acked.apply(Ack), None);
    }
}
