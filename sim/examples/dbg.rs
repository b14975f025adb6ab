use keel_sim::scenario::*;
use std::time::Duration;
fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(42);
    let nodes: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let rate: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(200.0);
    let dur: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(30_000);
    let faults = if args.get(5).map(|s| s.as_str()) == Some("quiet") {
        vec![]
    } else {
        vec![
            TimedFault {
                at: ms(5000),
                fault: Fault::Crash(Selector::Leader),
            },
            TimedFault {
                at: ms(12000),
                fault: Fault::Restart(Selector::LastCrashed),
            },
            TimedFault {
                at: ms(15000),
                fault: Fault::Hang(Selector::Leader, ms(3000)),
            },
            TimedFault {
                at: ms(20000),
                fault: Fault::Overload {
                    rate_per_sec: std::env::var("OV")
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(20000.0),
                    lasting: ms(3000),
                },
            },
        ]
    };
    let s = Scenario {
        name: "dbg".into(),
        description: String::new(),
        nodes,
        duration: ms(dur),
        network: NetworkSpec {
            latency: (ms(1), ms(5)),
            drop_rate: 0.0,
            duplicate_rate: 0.0,
        },
        clients: ClientSpec {
            count: 4,
            rate_per_sec: rate,
            keys: 16,
            timeout: ms(1000),
        },
        workloads: vec![],
        faults,
        expect: vec![
            Expectation::NewLeaderWithin(ms(1000)),
            Expectation::NoLostWrites,
            Expectation::Linearizable,
        ],
    };
    let t = std::time::Instant::now();
    let r = keel_sim::run(&s, seed, &keel_sim::RunOptions::default());
    let wall = t.elapsed();
    if args.get(6).is_some() {
        for l in &r.condensed_trace {
            println!("{l}");
        }
    }
    print!("{}", r.summary(wall));
    println!("trace-hash: {}", r.trace_hash);
}
