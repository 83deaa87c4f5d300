//! Diagnosis cost once the org is loaded, and the cost of loading it.
//! Run: `cargo bench --bench diagnosis` (BENCHMARKS.md has the figures).

// The allocator `serve` uses: allocation is a large share of the reply's cost.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};

use crm_username::diagnose::diagnose;
use crm_username::domain::{Org, OrgSnapshot, Query};
use crm_username::synthetic::{Params, Variety, generate, generate_with, username};

fn org(sf_users: usize, ae_users: usize) -> Org {
    Org::new(generate(Params {
        sf_users,
        ae_users,
        business_units: 3,
        seed: 7,
    }))
}

fn bench_diagnosis(c: &mut Criterion) {
    let now = Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap();
    for (label, sf, ae) in [("1k", 1_000, 200), ("100k", 100_000, 20_000)] {
        let org = org(sf, ae);
        let mut group = c.benchmark_group(format!("diagnose_{label}"));
        let queries = [
            ("username", username(sf / 2)),
            (
                "user_id",
                crm_username::synthetic::user_id(sf / 3).to_string(),
            ),
            ("username_for_target", format!("{} for 5", username(sf / 4))),
            ("name", org.snapshot().salesforce.users[sf / 5].name.clone()),
            ("name_not_found", "Jnae Xoe".to_owned()),
            (
                "typo_not_found",
                format!("usr{}@synthetic.example.com", sf / 6),
            ),
        ];
        for (name, text) in queries {
            let query = Query::parse(&text).unwrap();
            group.bench_function(name, |b| {
                b.iter(|| diagnose(black_box(&query), black_box(&org), now))
            });
        }
        group.finish();
    }
}

fn bench_load(c: &mut Criterion) {
    let json = serde_json::to_string(&generate(Params {
        sf_users: 100_000,
        ae_users: 20_000,
        business_units: 3,
        seed: 7,
    }))
    .unwrap();
    let mut group = c.benchmark_group("load_100k");
    group.sample_size(10);
    group.bench_function("parse_validate_index", |b| {
        b.iter(|| Org::new(OrgSnapshot::from_json(black_box(&json), "bench").unwrap()))
    });
    group.finish();
}

/// What `serve` does for each new check once it has the data: the diagnosis, the Block Kit
/// reply and its JSON, for internal users of an org of the scale benchmark's shape (10 business
/// units, each assigning groups nested five deep and roles, in both sections).
fn bench_reply(c: &mut Criterion) {
    let now = Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap();
    let org = Org::new(generate_with(
        Params {
            sf_users: 10_000,
            ae_users: 400,
            business_units: 10,
            seed: 7,
        },
        Variety {
            external_percent: 90,
            sales_section: true,
            group_members: 10_000,
        },
    ));
    let queries: Vec<Query> = org
        .snapshot()
        .salesforce
        .users
        .iter()
        .filter(|u| u.is_internal())
        .take(64)
        .map(|u| Query::parse(&u.username).unwrap())
        .collect();
    let mut group = c.benchmark_group("reply_bench_org");
    group.bench_function("diagnose", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % queries.len();
            diagnose(black_box(&queries[i]), black_box(&org), now)
        })
    });
    group.bench_function("diagnose_render_json", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % queries.len();
            let d = diagnose(black_box(&queries[i]), black_box(&org), now).unwrap();
            let message = crm_username::render::slack::message(&d).as_response(false, None);
            serde_json::to_vec(&message).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_diagnosis, bench_load, bench_reply);
criterion_main!(benches);
