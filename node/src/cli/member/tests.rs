//! `keel member`'s steps against an in-memory cluster that applies changes by the core's
//! rules (and answers with its refusals) as scripted.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use keel_core::{MemberChange, MembershipError, NodeId};
use keel_node::api::{ClusterInfo, MemberInfo, MembersInfo, StrangerInfo};

use super::remote::{Change, Cluster, NewNode, Outcome};
use super::replace::plan;
use super::steps::{may_pass_later, run_plan, Wait};
use super::table;

const OLD: &str = "0000000000000000";
const NEW: &str = "00000000000000c3";

/// What the fake answers to the next change instead of applying it by the rules.
enum Scripted {
    /// This answer, the change not applied.
    Answer(Outcome),
    /// Applied, but the answer lost.
    AppliedButLost,
    /// Applied by the rules, as when nothing is scripted.
    Rules,
}

struct Fake {
    state: RefCell<MembersInfo>,
    script: RefCell<VecDeque<Scripted>>,
    sent: RefCell<Vec<Change>>,
    leader: bool,
}

fn member(id: &str, incarnation: &str, voter: bool) -> MemberInfo {
    MemberInfo {
        id: id.into(),
        incarnation: incarnation.into(),
        voter,
        address: format!("127.0.0.1:700{}", &id[1..]),
    }
}

impl Fake {
    fn new(members: Vec<MemberInfo>, strangers: Vec<StrangerInfo>) -> Fake {
        Fake {
            state: RefCell::new(MembersInfo {
                revision: 10,
                index: 3,
                committed: true,
                members,
                strangers,
            }),
            script: RefCell::new(VecDeque::new()),
            sent: RefCell::new(Vec::new()),
            leader: true,
        }
    }

    fn three() -> Fake {
        let v = |id| member(id, OLD, true);
        Fake::new(vec![v("n1"), v("n2"), v("n3")], vec![])
    }

    fn then(self, s: Scripted) -> Fake {
        self.script.borrow_mut().push_back(s);
        self
    }

    /// The change applied by the core's rules: the new revision, or the refusal's reason.
    fn apply(&self, change: &Change) -> Result<u64, String> {
        let mut s = self.state.borrow_mut();
        let at = |id: &str| s.members.iter().position(|x| x.id == id);
        match change {
            Change::Add(r) => {
                let learner = MemberInfo {
                    id: r.id.clone(),
                    incarnation: r.incarnation.clone(),
                    voter: false,
                    address: r.address.clone(),
                };
                match at(&r.id) {
                    Some(i) if s.members[i].incarnation == r.incarnation => {
                        return Err(format!("{} is already a member of that incarnation", r.id))
                    }
                    Some(i) => s.members[i] = learner,
                    None => s.members.push(learner),
                }
                s.strangers.retain(|x| x.id != r.id);
            }
            Change::Promote(id) => match at(&id.to_string()) {
                None => return Err(format!("promote {id} to voter: {id} is not a member")),
                Some(i) if s.members[i].voter => {
                    return Err(format!("promote {id} to voter: {id} is already a voter"))
                }
                Some(i) => s.members[i].voter = true,
            },
            Change::Remove(id) => match at(&id.to_string()) {
                None => return Err(format!("remove {id}: {id} is not a member")),
                Some(i) => {
                    s.members.remove(i);
                }
            },
        }
        s.revision += 1;
        Ok(s.revision)
    }

    /// Each member as `id role incarnation`.
    fn roles(&self) -> Vec<String> {
        let s = self.state.borrow();
        s.members
            .iter()
            .map(|x| {
                let role = if x.voter { "voter" } else { "learner" };
                format!("{} {role} {}", x.id, x.incarnation)
            })
            .collect()
    }
}

impl Cluster for Fake {
    fn members(&self) -> anyhow::Result<MembersInfo> {
        Ok(self.state.borrow().clone())
    }

    fn change(&self, change: &Change) -> anyhow::Result<Outcome> {
        self.sent.borrow_mut().push(change.clone());
        let scripted = self.script.borrow_mut().pop_front();
        match scripted {
            Some(Scripted::Answer(o)) => Ok(o),
            Some(Scripted::AppliedButLost) => {
                let _ = self.apply(change);
                Ok(Outcome::Unsettled("504 (outcome unknown)".into()))
            }
            Some(Scripted::Rules) | None => Ok(match self.apply(change) {
                Ok(revision) => Outcome::Committed { revision },
                Err(reason) => Outcome::Refused(reason),
            }),
        }
    }

    fn here(&self) -> anyhow::Result<ClusterInfo> {
        let node = if self.leader { "n1" } else { "n2" };
        Ok(ClusterInfo {
            node: node.into(),
            leader: Some("n1".into()),
            term: 2,
            commit_index: 10,
            members: vec![],
            incarnation: OLD.into(),
            peer_address: String::new(),
            voter: true,
            needs_replacement: false,
            membership: vec![],
            strangers: vec![],
        })
    }
}

fn quick(timeout_ms: u64) -> Wait {
    Wait {
        started: Instant::now(),
        timeout: Duration::from_millis(timeout_ms),
        poll: Duration::from_millis(1),
    }
}

fn not_caught_up(id: u32) -> Scripted {
    let e = MembershipError::NotCaughtUp {
        id: NodeId(id),
        behind: 900,
        bound: 256,
    };
    Scripted::Answer(Outcome::Refused(format!(
        "{}: {e}",
        MemberChange::Promote { id: NodeId(id) }
    )))
}

/// Runs the replacement of `id` on `fake`: its output, or the error.
fn replace(fake: &Fake, id: u32, with: Option<&NewNode>) -> Result<String, String> {
    let mut out = Vec::new();
    let run = plan(fake, NodeId(id), with).and_then(|(steps, what)| {
        out.extend_from_slice(format!("{what}\n").as_bytes());
        run_plan(fake, &steps, &quick(2_000), "keel member replace", &mut out)
    });
    let text = String::from_utf8_lossy(&out).into_owned();
    run.map(|()| text).map_err(|e| format!("{e:#}"))
}

#[test]
fn a_node_back_on_an_empty_disk_is_added_back_and_promoted_once_caught_up() {
    let heard = StrangerInfo {
        id: "n3".into(),
        incarnation: NEW.into(),
    };
    let v = |id| member(id, OLD, true);
    let fake = Fake::new(vec![v("n1"), v("n2"), v("n3")], vec![heard])
        .then(Scripted::AppliedButLost)
        .then(not_caught_up(3));
    let out = replace(&fake, 3, None).expect("replaced");
    assert!(
        out.contains("n3 is back as incarnation 00000000000000c3"),
        "{out}"
    );
    assert!(out.contains("step 1 of 2: add n3 (incarnation 00000000000000c3, peer address 127.0.0.1:7003) as a learner\n  done (an attempt whose answer was lost made it)"), "{out}");
    assert!(out.contains("not yet (0s of 2s): promote n3 to voter: n3 cannot be promoted: it is 900 entries behind"), "{out}");
    assert!(out.contains("step 2 of 2: promote n3 to voter"), "{out}");
    assert_eq!(
        fake.roles(),
        [
            format!("n1 voter {OLD}"),
            format!("n2 voter {OLD}"),
            format!("n3 voter {NEW}")
        ]
    );
    // Run again: nothing left to do but a promotion that already holds.
    let again = replace(&fake, 3, None);
    assert!(again
        .is_err_and(|e| e.contains("no other incarnation of n3 has been heard by the leader, n1")));
}

#[test]
fn a_learner_left_by_an_interrupted_replacement_is_promoted() {
    let fake = Fake::new(
        vec![
            member("n1", OLD, true),
            member("n2", OLD, true),
            member("n3", NEW, false),
        ],
        vec![],
    );
    let out = replace(&fake, 3, None).expect("replaced");
    assert!(out.contains("already back as a learner"), "{out}");
    assert_eq!(*fake.sent.borrow(), [Change::Promote(NodeId(3))]);
}

#[test]
fn nothing_to_replace_says_where_to_look_and_what_to_do() {
    let mut fake = Fake::three();
    fake.leader = false;
    let e = replace(&fake, 3, None).expect_err("nothing heard");
    assert!(
        e.contains("heard by n2, which does not lead (the leader, n1,"),
        "{e}"
    );
    assert!(
        e.contains("keel member replace n3 --with http://HOST:PORT"),
        "{e}"
    );
    let e = replace(&fake, 7, None).expect_err("not a member");
    assert!(e.starts_with("n7 is not a member (n1 voter"), "{e}");
    assert!(fake.sent.borrow().is_empty());
}

fn n4() -> NewNode {
    NewNode {
        url: "http://127.0.0.1:8004".into(),
        id: NodeId(4),
        incarnation: NEW.into(),
        address: "127.0.0.1:7004".into(),
    }
}

#[test]
fn another_node_takes_the_place_of_a_member() {
    let fake = Fake::three();
    let out = replace(&fake, 2, Some(&n4())).expect("replaced");
    assert!(
        out.contains("step 3 of 3: remove n2\n  done: committed at revision 13"),
        "{out}"
    );
    assert_eq!(
        fake.roles(),
        [
            format!("n1 voter {OLD}"),
            format!("n3 voter {OLD}"),
            format!("n4 voter {NEW}")
        ]
    );
}

#[test]
fn a_failed_step_names_itself_the_state_left_and_how_to_continue() {
    let gone = Scripted::Answer(Outcome::Refused(
        "promote n4 to voter: n4 is not a member".into(),
    ));
    let fake = Fake::three().then(Scripted::Rules).then(gone);
    let e = replace(&fake, 2, Some(&n4())).expect_err("fails");
    assert!(
        e.starts_with("step 2 of 3 (promote n4 to voter) failed: promote n4 to voter: n4 is not"),
        "{e}"
    );
    assert!(
        e.contains("the configuration now: n1 voter (incarnation 0000000000000000), n2 voter"),
        "{e}"
    );
    assert!(
        e.contains("n4 learner (incarnation 00000000000000c3), committed\n"),
        "{e}"
    );
    assert!(
        e.ends_with("to continue, run again: keel member replace"),
        "{e}"
    );
}

#[test]
fn a_learner_that_never_catches_up_times_out_with_the_last_reason() {
    let fake = Fake::new(
        vec![member("n1", OLD, true), member("n4", NEW, false)],
        vec![],
    );
    for _ in 0..10_000 {
        fake.script.borrow_mut().push_back(not_caught_up(4));
    }
    let started = Instant::now();
    let mut out = Vec::new();
    let e = run_plan(
        &fake,
        &[Change::Promote(NodeId(4))],
        &quick(50),
        "x",
        &mut out,
    )
    .expect_err("times out");
    assert!(started.elapsed() < Duration::from_secs(2));
    let e = format!("{e:#}");
    assert!(e.contains("gave up after 50ms (--timeout); the last answer: promote n4 to voter: n4 cannot be promoted"), "{e}");
    assert!(e.contains("n4 learner"), "{e}");
}

/// The refusals worth waiting out are recognised in the words the core writes them in.
#[test]
fn the_refusals_that_pass_by_themselves_are_told_apart() {
    let promote = MemberChange::Promote { id: NodeId(4) };
    let later = [
        MembershipError::NotCaughtUp {
            id: NodeId(4),
            behind: 300,
            bound: 256,
        },
        MembershipError::ChangeInProgress(17),
        MembershipError::LeaderNotReady,
    ];
    let never = [
        MembershipError::AlreadyMember(NodeId(4)),
        MembershipError::NotAMember(NodeId(4)),
        MembershipError::AlreadyVoter(NodeId(4)),
        MembershipError::LastVoter(NodeId(4)),
    ];
    for e in later {
        assert!(may_pass_later(&format!("{promote}: {e}")), "{e}");
    }
    for e in never {
        assert!(!may_pass_later(&format!("{promote}: {e}")), "{e}");
    }
}

#[test]
fn the_list_marks_learners_and_members_to_replace() {
    let heard = StrangerInfo {
        id: "n3".into(),
        incarnation: NEW.into(),
    };
    let mut m = Fake::new(
        vec![
            member("n1", OLD, true),
            member("n3", OLD, true),
            member("n4", NEW, false),
        ],
        vec![heard],
    )
    .members()
    .expect("members");
    m.committed = false;
    m.members[0].address.clear();
    let text = table(&m);
    assert!(
        text.starts_with("the configuration of log index 3 (NOT committed yet"),
        "{text}"
    );
    assert!(
        text.contains("needs replacement (heard as incarnation 00000000000000c3)"),
        "{text}"
    );
    assert!(text.contains("learner"), "{text}");
    assert!(text.ends_with("n3 lost its data directory (heard as incarnation 00000000000000c3): keel member replace n3\n"), "{text}");
}

#[test]
fn the_node_asked_is_never_removed_through_itself() {
    let fake = Fake::three();
    let mut out = Vec::new();
    let e = run_plan(
        &fake,
        &[Change::Remove(NodeId(1))],
        &quick(50),
        "x",
        &mut out,
    )
    .expect_err("refused");
    assert!(
        format!("{e:#}").starts_with("n1 is the node asked (--addr)"),
        "{e:#}"
    );
    assert!(fake.sent.borrow().is_empty());
}
