use std::collections::HashSet;

use super::*;
use crate::generator::Kind;

const STORE: StoreBehaviour = StoreBehaviour {
    void_share: 0.05,
    refund_share: 0.1,
    cross_till_share: 0.5,
    offline_till: true,
    restore_rewind: 20,
    retire_till: true,
};

const LOAD: Duration = Duration::from_secs(100);

fn kind(ticket: &Ticket) -> Kind {
    ticket.kind()
}

fn target(ticket: &Ticket) -> Option<Target> {
    match ticket {
        Ticket::Sale { .. } | Ticket::Refund { of: None, .. } => None,
        Ticket::Refund { of: Some(of), .. } | Ticket::Void { of } => Some(*of),
    }
}

/// One step of a plan without its sale id: the till, what is rung up, the
/// till and journal entry of the sale it names, and its contents.
type Step = (usize, Kind, Option<(usize, usize)>, String);

/// A plan without its sale ids (always new).
fn plan(seed: u64, tills: usize, count: usize) -> Vec<Step> {
    let mut planner = Planner::new(seed, tills, STORE, LOAD);
    (0..count)
        .map(|_| {
            let a = planner.arrival();
            let named = target(&a.ticket).map(|t| (t.till, t.entry));
            let content = match a.ticket {
                Ticket::Sale { content } | Ticket::Refund { content, .. } => content.to_string(),
                Ticket::Void { of } => format!("mirrors {}", of.content),
            };
            (a.till, kind(&a.ticket), named, content)
        })
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_plan_apart_from_sale_ids() {
    assert_eq!(plan(42, 5, 2000), plan(42, 5, 2000));
    assert_ne!(plan(42, 5, 2000), plan(43, 5, 2000));
}

/// Voids and refunds name plain sales rung up before them, on any till,
/// each at most once, and the journal entry they give is that sale's.
#[test]
fn voids_and_refunds_name_an_earlier_plain_sale_once() {
    let mut planner = Planner::new(1, 4, STORE, LOAD);
    let mut rung: Vec<Vec<(Uuid, Ticket)>> = vec![Vec::new(); 4];
    let mut named = HashSet::new();
    for _ in 0..5000 {
        let a = planner.arrival();
        if let Some(t) = target(&a.ticket) {
            let (sale_id, ticket) = rung[t.till][t.entry];
            assert_eq!(sale_id, t.sale_id);
            assert_eq!(ticket, Ticket::Sale { content: t.content });
            assert!(named.insert(t.sale_id), "named twice: {}", t.sale_id);
        }
        rung[a.till].push((a.sale_id, a.ticket));
    }
    assert!(named.len() > 300, "{}", named.len());
}

#[test]
fn voids_and_refunds_go_to_another_till_as_often_as_asked() {
    let share_elsewhere = |cross_till_share: f64| {
        let behaviour = StoreBehaviour {
            cross_till_share,
            ..STORE
        };
        let mut planner = Planner::new(3, 5, behaviour, LOAD);
        let (mut elsewhere, mut all) = (0.0, 0.0);
        for _ in 0..20_000 {
            let a = planner.arrival();
            if let Some(t) = target(&a.ticket) {
                all += 1.0;
                if t.till != a.till {
                    elsewhere += 1.0;
                }
            }
        }
        elsewhere / all
    };
    assert_eq!(share_elsewhere(0.0), 0.0);
    let half = share_elsewhere(0.5);
    assert!((0.4..0.6).contains(&half), "{half}");
    assert!(share_elsewhere(1.0) > 0.95);
}

#[test]
fn a_store_of_one_till_names_its_own_sales() {
    let mut planner = Planner::new(9, 1, STORE, LOAD);
    for _ in 0..2000 {
        let a = planner.arrival();
        assert_eq!(a.till, 0);
        assert!(target(&a.ticket).is_none_or(|t| t.till == 0));
    }
}

#[test]
fn the_incidents_fall_on_their_own_tills_in_time_order() {
    let at = |s: u64| Duration::from_secs(s);
    assert_eq!(
        incidents(5, &STORE, LOAD),
        [
            (at(30), Incident::LinkDown(0)),
            (
                at(50),
                Incident::Restore {
                    till: 1,
                    rewind: 20
                }
            ),
            (at(55), Incident::LinkDown(4)),
            (at(60), Incident::LinkUp(0)),
            (at(75), Incident::Retire(4)),
        ]
    );
    // The only till is never retired.
    assert!(
        !incidents(1, &STORE, LOAD)
            .iter()
            .any(|(_, i)| matches!(i, Incident::Retire(_)))
    );
    let none = StoreBehaviour {
        offline_till: false,
        restore_rewind: 0,
        retire_till: false,
        ..STORE
    };
    assert!(incidents(5, &none, LOAD).is_empty());
}

#[test]
fn a_retired_till_gets_no_more_customers() {
    let mut planner = Planner::new(5, 3, STORE, LOAD);
    let mut seen = Vec::new();
    while let Some(incident) = planner.incident_due(LOAD) {
        seen.push(incident);
    }
    assert_eq!(seen.last(), Some(&Incident::Retire(2)));
    assert_eq!(planner.next_incident_at(), None);
    for _ in 0..3000 {
        assert_ne!(planner.arrival().till, 2);
    }
}

#[test]
fn an_incident_is_handed_out_only_when_due() {
    let mut planner = Planner::new(5, 3, STORE, LOAD);
    assert_eq!(planner.incident_due(Duration::from_secs(29)), None);
    assert_eq!(
        planner.incident_due(Duration::from_secs(30)),
        Some(Incident::LinkDown(0))
    );
    assert_eq!(planner.incident_due(Duration::from_secs(30)), None);
    assert_eq!(planner.next_incident_at(), Some(Duration::from_secs(50)));
}
