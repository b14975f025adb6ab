//! The scenario parser's tests: every shipped scenario loads and round-trips, and every kind of
//! malformed scenario is refused naming its line and field.
//! Tests only: nothing here is part of the parser.

use std::time::Duration;

use super::*;

fn dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

fn err(text: &str) -> ScenarioError {
    Scenario::parse(text, "t.ron").expect_err("the scenario should be refused")
}

const BASE: &str = "Scenario(\n    name: \"t\",\n    nodes: 3,\n    duration: \"30s\",\n";

/// `e` names line `line` and field `field`.
#[track_caller]
fn assert_at(e: &ScenarioError, line: usize, field: &str) {
    assert_eq!((e.line, e.field.as_deref()), (line, Some(field)), "{e}");
}

/// The base scenario with one fault, `fault` at `at`.
fn one_fault(at: &str, fault: &str) -> String {
    format!("{BASE}    faults: [\n        (at: \"{at}\", fault: {fault}),\n    ],\n)\n")
}

#[test]
fn every_scenario_file_loads_and_round_trips() {
    let mut n = 0;
    for entry in std::fs::read_dir(dir()).expect("scenarios/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "ron") {
            continue;
        }
        let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let again = Scenario::parse(&s.to_ron(), "round-trip")
            .unwrap_or_else(|e| panic!("{e}\n{}", s.to_ron()));
        assert_eq!(s, again, "{}", path.display());
        n += 1;
    }
    assert!(n >= 11, "only {n} scenario files");
}

#[test]
fn defaults_fill_optional_fields() {
    let s = Scenario::parse(&format!("{BASE})\n"), "t.ron").expect("parses");
    assert_eq!(s.network, NetworkSpec::default());
    assert_eq!(s.clients, ClientSpec::default());
    assert!(s.faults.is_empty() && s.expect.is_empty() && s.workloads.is_empty());
    assert_eq!(s.node_names(), ["n1", "n2", "n3"]);
}

#[test]
fn an_unknown_field_names_its_line_and_field() {
    let e = err(&format!("{BASE}    frobnicate: true,\n)\n"));
    assert_at(&e, 5, "frobnicate");
    let text = e.to_string();
    assert!(text.starts_with("t.ron:5:"), "{text}");
    assert!(
        text.contains("frobnicate") && text.contains("duration"),
        "{text}"
    );
}

#[test]
fn a_bad_duration_names_its_line_and_field() {
    let e = err("Scenario(\n    name: \"t\",\n    nodes: 3,\n    duration: \"30 parsecs\",\n)\n");
    assert_at(&e, 4, "duration");
    assert!(e.message.contains("250ms"), "{e}");
}

#[test]
fn a_missing_field_is_named() {
    let e = err("Scenario(\n    name: \"t\",\n    nodes: 3,\n)\n");
    assert_eq!(e.field.as_deref(), Some("duration"), "{e}");
}

#[test]
fn a_wrong_type_names_the_field_it_is_in() {
    let e = err("Scenario(\n    name: \"t\",\n    nodes: \"three\",\n    duration: \"1s\",\n)\n");
    assert_at(&e, 3, "nodes");
}

#[test]
fn an_unknown_node_names_the_fault() {
    let e = err(&one_fault(
        "1s",
        "Crash(Leader)),\n        (at: \"2s\", fault: Crash(Node(\"n9\"))",
    ));
    assert_at(&e, 7, "faults[1].fault");
    assert!(
        e.message.contains("\"n9\"") && e.message.contains("n1..n3"),
        "{e}"
    );
    let e = err(&one_fault("2s", "Partition([[\"n1\"], [\"n2\", \"n7\"]])"));
    assert_at(&e, 6, "faults[0].fault");
}

#[test]
fn a_fault_after_the_end_or_out_of_order_is_refused() {
    let e = err(&one_fault("40s", "Heal"));
    assert_at(&e, 6, "faults[0].at");
    assert!(e.message.contains("after the end"), "{e}");
    let e = err(&one_fault("5s", "Heal),\n        (at: \"4s\", fault: Heal"));
    assert_at(&e, 7, "faults[1].at");
}

#[test]
fn semantic_limits_are_enforced() {
    let e = err("Scenario(\n    name: \"t\",\n    nodes: 0,\n    duration: \"1s\",\n)\n");
    assert_at(&e, 3, "nodes");
    let e = err(&format!(
        "{BASE}    network: (latency: (\"5ms\", \"1ms\")),\n)\n"
    ));
    assert_at(&e, 5, "network.latency");
    let e = err(&format!("{BASE}    network: (drop_rate: 1.5),\n)\n"));
    assert_eq!(e.field.as_deref(), Some("network.drop_rate"), "{e}");
    let e = err(&format!(
        "{BASE}    faults: [(at: \"1s\", fault: Slow(Leader, 0.5, \"1s\"))],\n)\n"
    ));
    assert_eq!(e.field.as_deref(), Some("faults[0].fault"), "{e}");
    let e = err(&format!(
        "{BASE}    faults: [(at: \"1s\", fault: CrashWorkload(\"web\"))],\n)\n"
    ));
    assert!(e.message.contains("unknown workload"), "{e}");
    let e = err(&format!(
        "{BASE}    faults: [(at: \"1s\", fault: Hang(Leader, \"0s\"))],\n)\n"
    ));
    assert_eq!(e.field.as_deref(), Some("faults[0].fault"), "{e}");
}

#[test]
fn a_syntax_error_has_a_position() {
    let e = err("Scenario(\n    name: \"t\",\n    nodes: 3\n    duration: \"1s\",\n)\n");
    assert!(e.line >= 3, "{e}");
}

#[test]
fn the_display_form_is_exact() {
    let mut e = ScenarioError {
        file: "f.ron".into(),
        line: 5,
        column: 9,
        field: Some("nodes".into()),
        message: "bad".into(),
    };
    assert_eq!(e.to_string(), "f.ron:5:9: field `nodes`: bad");
    e.field = None;
    assert_eq!(e.to_string(), "f.ron:5:9: bad");
}

#[test]
fn nested_errors_name_the_full_path() {
    let e = err(&format!("{BASE}    clients: (count: 2, bogus: 1),\n)\n"));
    assert_eq!((e.line, e.column), (5, 25), "{e}");
    assert_eq!(e.field.as_deref(), Some("clients.bogus"), "{e}");
    assert!(e.message.contains("rate_per_sec"), "{e}");
    let e = err(&format!("{BASE}    clients: (count: \"x\"),\n)\n"));
    assert_at(&e, 5, "clients.count");
    let e = err(&format!(
        "{BASE}    workloads: [(name: \"a\"), (count: 2)],\n)\n"
    ));
    assert_at(&e, 5, "workloads[1].name");
    let e = err("Scenario(\n    name: \"t\",\n    nodes: 3)\n");
    assert_at(&e, 3, "duration");
    let e = err(&format!(
        "{BASE}    faults: [(at: \"1s\", fault: Overload(rate_per_sec: 5))],\n)\n"
    ));
    assert_eq!(e.field.as_deref(), Some("faults[0].fault.lasting"), "{e}");
    let e = err(&format!(
        "{BASE}    expect: [NoLostWrites, Linearisable],\n)\n"
    ));
    assert_at(&e, 5, "expect[1]");
}

#[test]
fn entries_on_one_line_are_told_apart() {
    let line =
        "    faults: [(at: \"1s\", fault: Heal), (at: \"2s\", fault: Crash(Node(\"n4\")))],\n";
    let e = err(&format!("{BASE}{line})\n"));
    assert_eq!(e.field.as_deref(), Some("faults[1].fault"), "{e}");
    assert_eq!(
        (e.line, e.column),
        (5, 1 + line.find("\"n4\"").unwrap()),
        "{e}"
    );
    let line = "    faults: [(at: \"1s\", fault: Heal), (at: \"2s\", fault: Crash(Leeder))],\n";
    let e = err(&format!("{BASE}{line})\n"));
    assert_at(&e, 5, "faults[1].fault");
    let line = "    faults: [(at: \"5s\", fault: Heal), (at: \"1s\", fault: Heal)],\n";
    let e = err(&format!("{BASE}{line})\n"));
    assert_eq!(e.field.as_deref(), Some("faults[1].at"), "{e}");
    assert_eq!(e.column, 1 + line.rfind("at:").unwrap(), "{e}");
}

#[test]
fn fields_are_found_in_their_own_struct_despite_strings_and_comments() {
    // `rate_per_sec:` of the overload comes first, `at:` hides in a string and a comment.
    let text = format!(
            "{BASE}    description: \"faults: [(at: \\\"1s\\\")]\", /* at: \"0s\" */\n    faults: [\n        // (at: \"3s\", fault: Heal),\n        (at: \"1s\", fault: Overload(rate_per_sec: 10, lasting: \"1s\")),\n        (at: \"99s\", fault: Heal),\n    ],\n    clients: (rate_per_sec: -1),\n)\n"
        );
    let e = err(&text.replace("-1", "1"));
    assert_at(&e, 9, "faults[1].at");
    let e = err(&text.replace("\"99s\"", "\"2s\""));
    assert_at(&e, 11, "clients.rate_per_sec");
}

#[test]
fn more_semantic_limits() {
    let w = "    workloads: [(name: \"web\"), (name: \"web\")],\n";
    let e = err(&format!("{BASE}{w})\n"));
    assert_eq!(e.field.as_deref(), Some("workloads[1].name"), "{e}");
    let e = err(&format!("{BASE}    workloads: [(name: \"\")],\n)\n"));
    assert_eq!(e.field.as_deref(), Some("workloads[0].name"), "{e}");
    let e = err(&format!("{BASE}    clients: (count: 1, keys: 0),\n)\n"));
    assert_at(&e, 5, "clients.keys");
    let e = err(&format!("{BASE}    clients: (rate_per_sec: -5),\n)\n"));
    assert_eq!(e.field.as_deref(), Some("clients.rate_per_sec"), "{e}");
    let e = err(&format!("{BASE}    network: (duplicate_rate: -0.1),\n)\n"));
    assert_eq!(e.field.as_deref(), Some("network.duplicate_rate"), "{e}");
    let e = err("Scenario(\n    name: \"t\",\n    nodes: 10,\n    duration: \"1s\",\n)\n");
    assert_at(&e, 3, "nodes");
    let e = err("Scenario(\n    name: \"t\",\n    nodes: 3,\n    duration: \"0s\",\n)\n");
    assert_at(&e, 4, "duration");
    let e = err(&format!(
            "{BASE}    faults: [(at: \"1s\", fault: Overload(rate_per_sec: 10, lasting: \"0s\"))],\n)\n"
        ));
    assert_eq!(e.field.as_deref(), Some("faults[0].fault"), "{e}");
    let e = err(&format!(
        "{BASE}    faults: [(at: \"1s\", fault: Slow(Leader, 2, \"0ms\"))],\n)\n"
    ));
    assert_eq!(e.field.as_deref(), Some("faults[0].fault"), "{e}");
    let e = err(&format!(
            "{BASE}    workloads: [(name: \"web\")],\n    faults: [(at: \"1s\", fault: HangWorkload(\"db\"))],\n)\n"
        ));
    assert_at(&e, 6, "faults[0].fault");
    let e = err(&format!(
        "{BASE}    expect: [NewLeaderWithin(\"soon\")],\n)\n"
    ));
    assert_at(&e, 5, "expect[0]");
    // Integer literals are fine where a float is expected, and workload faults resolve.
    let s = Scenario::parse(
            &format!("{BASE}    network: (drop_rate: 1),\n    workloads: [(name: \"web\")],\n    faults: [(at: \"1s\", fault: CrashWorkload(\"web\")), (at: \"1s\", fault: Slow(Random, 3, \"2s\"))],\n)\n"),
            "t.ron",
        )
        .unwrap();
    assert_eq!(s.network.drop_rate, 1.0);
    assert_eq!(s.workloads[0].count, 1);
    assert_eq!(s.workloads[0].max_attempts, 3);
    assert_eq!(
        s.faults[1].fault,
        Fault::Slow(Selector::Random, 3.0, Duration::from_secs(2))
    );
}

#[test]
fn armed_faults_parse_and_bad_ones_are_located() {
    let s = Scenario::parse(
            &one_fault("1s", "CrashAfterVote(LastCrashed, \"2ms\")),\n        (at: \"2s\", fault: IsolateLeaderOnAppend(\"800ms\")"),
            "t.ron",
        )
        .expect("parses");
    assert_eq!(
        s.faults[0].fault,
        Fault::CrashAfterVote(Selector::LastCrashed, Duration::from_millis(2))
    );
    assert_eq!(
        s.faults[1].fault,
        Fault::IsolateLeaderOnAppend(Duration::from_millis(800))
    );
    assert_eq!(Scenario::parse(&s.to_ron(), "again.ron"), Ok(s));
    let e = err(&one_fault(
        "1s",
        "Heal),\n        (at: \"2s\", fault: CrashAfterVote(Node(\"n4\"), \"1ms\")",
    ));
    assert_at(&e, 7, "faults[1].fault");
    let e = err(&one_fault("1s", "IsolateLeaderOnAppend(\"0s\")"));
    assert_at(&e, 6, "faults[0].fault");
    assert!(e.message.contains("above zero"), "{e}");
    let e = err(&one_fault("1s", "CrashAfterVote(Leader, \"soon\")"));
    assert_at(&e, 6, "faults[0].fault");
    let e = err(&one_fault("1s", "CrashAfterVote(\"1ms\")"));
    assert_at(&e, 6, "faults[0].fault");
}

#[test]
fn delays_parse_and_bad_ones_are_located() {
    let s = Scenario::parse(
        &one_fault(
            "1s",
            "Delay(from: Node(\"n1\"), to: Leader, extra: \"150ms\", lasting: \"2s\")",
        ),
        "t.ron",
    )
    .expect("parses");
    assert_eq!(
        s.faults[0].fault,
        Fault::Delay {
            from: Selector::Node("n1".into()),
            to: Selector::Leader,
            extra: Duration::from_millis(150),
            lasting: Duration::from_secs(2),
        }
    );
    assert_eq!(Scenario::parse(&s.to_ron(), "again.ron"), Ok(s));
    // A malformed extra latency names its line and the field inside the fault.
    let line = "        (at: \"2s\", fault: Delay(from: Leader, to: Follower, extra: \"soon\", lasting: \"1s\")),\n";
    let e = err(&format!(
        "{BASE}    faults: [\n        (at: \"1s\", fault: Heal),\n{line}    ],\n)\n"
    ));
    assert_at(&e, 7, "faults[1].fault.extra");
    assert_eq!(e.column, 1 + line.find("extra:").unwrap(), "{e}");
    assert!(e.message.contains("250ms"), "{e}");
    let e = err(&one_fault(
        "1s",
        "Delay(from: Leader, to: Follower, extra: \"5ms\", lasting: \"0s\")",
    ));
    assert_at(&e, 6, "faults[0].fault.lasting");
    assert!(e.message.contains("above zero"), "{e}");
    let e = err(&one_fault(
        "1s",
        "Delay(from: Leader, to: Follower, lasting: \"1s\")",
    ));
    assert_eq!(e.field.as_deref(), Some("faults[0].fault.extra"), "{e}");
    assert!(e.message.contains("missing field `extra`"), "{e}");
    let e = err(&one_fault(
        "1s",
        "Delay(from: Node(\"n7\"), to: Leader, extra: \"5ms\", lasting: \"1s\")",
    ));
    assert_at(&e, 6, "faults[0].fault");
    assert!(e.message.contains("\"n7\""), "{e}");
}

#[test]
fn commit_cut_offs_parse_and_bad_ones_are_located() {
    let s = Scenario::parse(&one_fault("3s", "IsolateLeaderOnCommit(\"2s\")"), "t.ron")
        .expect("parses");
    assert_eq!(
        s.faults[0].fault,
        Fault::IsolateLeaderOnCommit(Duration::from_secs(2))
    );
    assert_eq!(Scenario::parse(&s.to_ron(), "again.ron"), Ok(s));
    let e = err(&one_fault("1s", "IsolateLeaderOnCommit(\"0ms\")"));
    assert_at(&e, 6, "faults[0].fault");
    assert!(e.message.contains("above zero"), "{e}");
}

#[test]
fn named_handovers_and_their_expectation_parse() {
    let s = Scenario::parse(
            &format!("{BASE}    faults: [\n        (at: \"1s\", fault: TransferLeadership),\n        (at: \"2s\", fault: TransferLeadershipTo(Node(\"n3\"))),\n    ],\n    expect: [TransfersReachTarget(\"1s\")],\n)\n"),
            "t.ron",
        )
        .expect("parses");
    assert_eq!(s.faults[0].fault, Fault::TransferLeadership);
    assert_eq!(
        s.faults[1].fault,
        Fault::TransferLeadershipTo(Selector::Node("n3".into()))
    );
    assert_eq!(
        s.expect,
        [Expectation::TransfersReachTarget(Duration::from_secs(1))]
    );
    assert_eq!(Scenario::parse(&s.to_ron(), "again.ron"), Ok(s));
    let e = err(&one_fault("1s", "TransferLeadershipTo(Node(\"n4\"))"));
    assert_at(&e, 6, "faults[0].fault");
    let e = err(&format!(
        "{BASE}    expect: [NoLostWrites, TransfersReachTarget(\"0s\")],\n)\n"
    ));
    assert_at(&e, 5, "expect[1]");
}

#[test]
fn an_unreadable_file_is_an_error() {
    let e = Scenario::load(std::path::Path::new("/nonexistent/x.ron")).unwrap_err();
    assert_eq!(e.file, "/nonexistent/x.ron");
    assert!(e.to_string().starts_with("/nonexistent/x.ron:"), "{e}");
}

#[test]
fn odd_values_round_trip() {
    let s = Scenario {
        name: "quote \" back\\slash \u{e9} \u{1F980} tab\t".into(),
        description: "line\nbreak // not a comment".into(),
        nodes: 9,
        members: 7,
        duration: Duration::from_nanos(90_000_000_123),
        network: NetworkSpec {
            latency: (
                Duration::from_micros(1_500),
                Duration::from_nanos(2_000_001),
            ),
            drop_rate: 0.1,
            duplicate_rate: 1.0,
        },
        clients: ClientSpec {
            count: 0,
            rate_per_sec: 0.3,
            keys: 0,
            timeout: Duration::from_millis(1_250),
        },
        workloads: vec![WorkloadSpec {
            name: "w\"1".into(),
            count: 1000,
            max_attempts: 7,
            watchdog: Some(Duration::from_micros(7)),
            backoff: (Duration::from_nanos(1), Duration::from_secs(90)),
        }],
        faults: vec![
            TimedFault {
                at: Duration::ZERO,
                fault: Fault::Partition(vec![vec!["n1".into(), "n9".into()], vec![]]),
            },
            TimedFault {
                at: Duration::from_millis(1),
                fault: Fault::OneWay(Selector::Node("n2".into()), Selector::LastCrashed),
            },
            TimedFault {
                at: Duration::from_secs(2),
                fault: Fault::Overload {
                    rate_per_sec: 12.5,
                    lasting: Duration::from_secs(120),
                },
            },
            TimedFault {
                at: Duration::from_secs(3),
                fault: Fault::HangWorkload("w\"1".into()),
            },
        ],
        expect: vec![
            Expectation::WorkloadsRecoveredWithin(Duration::from_micros(3)),
            Expectation::AtMostOneRunningCopy,
            Expectation::NoFalseReschedules,
        ],
        lease_reads: false,
    };
    let text = s.to_ron();
    assert_eq!(Scenario::parse(&text, "t.ron"), Ok(s), "{text}");
}

/// `members` defaults to every node; one outside 1..=nodes (or not a number) is refused naming
/// its line; the membership faults and their expectation parse, and a bad node name in one is
/// refused like any other.
#[test]
fn spare_nodes_and_membership_faults() {
    let s = Scenario::parse(&format!("{BASE})\n"), "t.ron").expect("parses");
    assert_eq!(s.members, 3);
    let s = Scenario::parse(&format!("{BASE}    members: 2,\n)\n"), "t.ron").expect("parses");
    assert_eq!((s.nodes, s.members), (3, 2));
    assert!(s.to_ron().contains("members: 2,"));
    for bad in ["0", "4"] {
        let e = err(&format!("{BASE}    members: {bad},\n)\n"));
        assert_at(&e, 5, "members");
        assert!(e.message.contains("1 to 3"), "{e}");
    }
    let e = err(&format!("{BASE}    members: \"two\",\n)\n"));
    assert_at(&e, 5, "members");
    for fault in [
        "AddLearner(Node(\"n3\"))",
        "AddMember(Follower)",
        "Promote(Random)",
        "RemoveMember(Leader)",
        "WipeDisk(Follower)",
        "ReplaceNode(LastWiped)",
    ] {
        let s = Scenario::parse(&one_fault("1s", fault), "t.ron").expect(fault);
        assert_eq!(fault_ron(&s.faults[0].fault), fault);
        assert_eq!(
            s.faults[0].fault.family() == Family::Crash,
            fault.starts_with("Wipe")
        );
    }
    let e = err(&one_fault("1s", "AddMember(Node(\"n7\"))"));
    assert!(e.message.contains("unknown node \"n7\""), "{e}");
    let s = Scenario::parse(
        &format!("{BASE}    expect: [MembershipSettledWithin(\"2s\")],\n)\n"),
        "t.ron",
    )
    .expect("parses");
    assert_eq!(
        s.expect,
        [Expectation::MembershipSettledWithin(Duration::from_secs(2))]
    );
}
