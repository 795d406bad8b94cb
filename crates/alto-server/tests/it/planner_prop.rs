//! The property the planner rests on: for random inventories and random rule sets, the
//! candidates PostgreSQL selects with the compiled SQL are exactly the candidates the Rust
//! reference evaluator finds, rule for rule.

use std::collections::BTreeSet;

use alto_db::planner::{self as pdb, Selection};
use alto_db::TenantCtx;
use alto_model::CustomerId;
use alto_rules::spec::*;
use alto_rules::{CompiledRule, Decision, EvalSettings, HostFacts, PathTag, TagIndex};
use alto_server::services::planner::{facts, host_rules};
use alto_test_support::TestDb;
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

const DIRS: [&str; 8] = [
    "/srv/a",
    "/srv/a/tmp",
    "/srv/b",
    "/srv/b/deep/er",
    "/home/u",
    "/home/u/tmp",
    "/data/x y",
    "/srv/ab",
];
const NAMES: [&str; 12] = [
    "report.pdf",
    "x1.iso",
    "disk.img",
    "notes",
    "REPORT.TXT",
    "a.log",
    "b.tmp",
    "été.doc",
    "12.csv",
    "line\nbreak.txt",
    "a%_.doc",
    "back\\x",
];
const GLOBS: [&str; 14] = [
    "*.iso",
    "/srv/a/**",
    "/srv/*/x*",
    "**/tmp/*",
    "*.{log,tmp}",
    "[ab]*",
    "/home/**/*.tmp",
    "*.TXT",
    "/srv/?/*",
    "/srv/a**",
    "*%_.doc",
    "*é.doc",
    "/srv/b/deep/er/5notes",
    "*\\\\x",
];
const REGEXES: [&str; 7] =
    ["^/srv/b/", r"\.(iso|img)$", "(?i)report", "[0-9]{2}", "é", r"^/[a-z]+/[a-z]+/", "\n"];

fn pick<'a, T: ?Sized>(r: &mut StdRng, v: &[&'a T]) -> &'a T {
    v[r.random_range(0..v.len())]
}

fn rand_rule(r: &mut StdRng, i: usize, host: Uuid, other: Uuid) -> RuleSpec {
    let mut c = Conditions::default();
    let mut s = Scope::default();
    for _ in 0..r.random_range(0..4) {
        match r.random_range(0..13) {
            0 => c.path_globs.push(pick(r, &GLOBS).into()),
            1 => c.path_regex = Some(pick(r, &REGEXES).into()),
            2 => c.accessed_older_than_days = Some(r.random_range(0..400)),
            3 => c.modified_newer_than_days = Some(r.random_range(100..900)),
            4 => c.min_size_bytes = Some(r.random_range(0..5000)),
            5 => c.max_size_bytes = Some(r.random_range(5000..20000)),
            6 => c.extensions = vec![pick(r, &[".iso", ".pdf", "log", ""]).into()],
            7 => c.exclude_extensions = vec![pick(r, &[".tmp", ".txt", ""]).into()],
            8 => c.owners = vec![pick(r, &["alice", "bob"]).into()],
            9 => {
                c.permissions = Some(PermissionCondition {
                    all_of: r.random_bool(0.5).then(|| "0004".into()),
                    none_of: Some("0002".into()),
                })
            }
            10 => c.tags.push(TagCondition {
                key: pick(r, &["project", "legal"]).into(),
                value: r.random_bool(0.5).then(|| pick(r, &["alpha", "hold"]).into()),
            }),
            11 => c.stub_state = Some(StubState::NotStubbed),
            _ => s.path_prefixes.push(pick(r, &["/srv/a", "/srv", "/home/u/", "/"]).into()),
        }
    }
    if r.random_bool(0.15) {
        s.hosts = vec![if r.random_bool(0.5) { host } else { other }];
    }
    if r.random_bool(0.1) {
        s.host_groups = vec![pick(r, &["nas", "web"]).into()];
    }
    let exclude = r.random_bool(0.25);
    if !exclude && c.stub_state.is_none() && r.random_bool(0.05) {
        c.stub_state = Some(StubState::NotStubbed);
    }
    RuleSpec {
        name: format!("r{i}"),
        description: None,
        enabled: r.random_bool(0.9),
        priority: (i as i32) * 10,
        scope: s,
        conditions: c,
        action: if exclude {
            Action::exclude()
        } else {
            let mut a = Action::tier("default");
            a.retain_after_recall_days = r.random_bool(0.5).then(|| r.random_range(0..45));
            a
        },
        schedule: None,
        order_by: OrderBy::default(),
    }
}

async fn one_case(db: &TestDb, seed: u64) {
    let mut r = StdRng::seed_from_u64(seed);
    let owner = db.owner_pool().await;
    let (c, h, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let now: DateTime<Utc> = "2026-06-01T12:00:00Z".parse().unwrap();
    sqlx::query("INSERT INTO customers (id, name, tier2_location, created_at, updated_at) VALUES ($1, $2, 't', $3, $3)")
        .bind(c).bind(format!("c{seed}-{c}")).bind(now).execute(&owner).await.unwrap();
    let groups: Vec<String> = if r.random_bool(0.5) { vec!["nas".into()] } else { vec![] };
    sqlx::query("INSERT INTO hosts (id, customer_id, name, groups, created_at, updated_at) VALUES ($1, $2, 'h', $3, $4, $4)")
        .bind(h).bind(c).bind(&groups).bind(now).execute(&owner).await.unwrap();
    let n = r.random_range(50..250);
    for i in 0..n {
        let dir = pick(&mut r, &DIRS);
        let name = pick(&mut r, &NAMES);
        let path = format!("{dir}/{i}{name}");
        let ext = name
            .rsplit_once('.')
            .map(|(_, e)| format!(".{}", e.to_lowercase()))
            .unwrap_or_default();
        let t = |r: &mut StdRng| -> Option<DateTime<Utc>> {
            (!r.random_bool(0.05)).then(|| now - Duration::seconds(r.random_range(0..800 * 86_400)))
        };
        let (mtime, atime) = (t(&mut r), t(&mut r));
        sqlx::query(
            "INSERT INTO file_inventory (customer_id, host_id, file_path, file_size, last_modified,
                last_accessed, file_extension, owner, mode, is_stubbed, scan_is_stub, deleted_at,
                recalled_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(c)
        .bind(h)
        .bind(&path)
        .bind(r.random_range(0..20_000i64))
        .bind(mtime)
        .bind(atime)
        .bind(&ext)
        .bind(if r.random_bool(0.1) {
            None
        } else {
            Some(pick(&mut r, &["alice", "bob", "carol"]).to_owned())
        })
        .bind(if r.random_bool(0.1) {
            None
        } else {
            Some(*[0o100644i64, 0o100666, 0o100600, 0o100755].get(r.random_range(0..4)).unwrap())
        })
        .bind(r.random_bool(0.1))
        .bind(r.random_bool(0.05))
        .bind(r.random_bool(0.05).then_some(now))
        // Recalled at some point of the last 60 days (or never): around every retention.
        .bind(r.random_bool(0.4).then(|| now - Duration::hours(r.random_range(0..60 * 24))))
        .execute(&owner)
        .await
        .unwrap();
    }
    let mut tags = Vec::new();
    for _ in 0..r.random_range(0..5) {
        let t = PathTag {
            host_id: r.random_bool(0.7).then_some(h),
            path: pick(&mut r, &["/srv", "/srv/a", "/home/u/tmp", "/", "/data/x y"]).into(),
            key: pick(&mut r, &["project", "legal"]).into(),
            value: pick(&mut r, &["alpha", "hold"]).into(),
        };
        if tags
            .iter()
            .any(|x: &PathTag| x.host_id == t.host_id && x.path == t.path && x.key == t.key)
        {
            continue;
        }
        sqlx::query("INSERT INTO path_tags (id, customer_id, host_id, path, key, value, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(Uuid::new_v4()).bind(c).bind(t.host_id).bind(&t.path).bind(&t.key).bind(&t.value).bind(now)
            .execute(&owner).await.unwrap();
        tags.push(t);
    }
    owner.close().await;
    let specs: Vec<RuleSpec> =
        (0..r.random_range(1..7)).map(|i| rand_rule(&mut r, i, h, other)).collect();
    // A random rule can be contradictory (e.g. `""` both included and excluded); validation
    // refuses those, so they never reach the planner: leave them out.
    let all: Vec<CompiledRule> = specs
        .iter()
        .filter_map(|s| alto_rules::compile(Uuid::new_v4(), 1, s, &|_| true).ok())
        .collect();
    let hf = HostFacts { id: h, groups: &groups };
    let (rules, _) = host_rules(&all, &hf);
    // Half the cases inline tag conditions as path tests, half use the subquery.
    let inline = r.random_bool(0.5);
    let tag_list: Vec<PathTag> =
        tags.iter().filter(|t| t.host_id.is_none_or(|x| x == h)).cloned().collect();
    let tags = TagIndex::new(tags);
    let es = EvalSettings {
        now,
        safety_window: Duration::hours(r.random_range(0..48)),
        recall_retention_days: r.random_range(0..45),
    };
    let eligible: Vec<usize> = (0..rules.len()).filter(|i| rules[*i].is_tier()).collect();

    let app = db.app_db().await;
    let mut tx = app.begin(TenantCtx::Tenant(CustomerId(c))).await.unwrap();
    let sql: BTreeSet<(Uuid, i32)> = pdb::select_candidates(
        &mut tx,
        &Selection {
            customer_id: c,
            host_id: h,
            rules: &rules,
            eligible: &eligible,
            now,
            safety_cutoff: es.safety_cutoff(),
            recall_retention_days: es.recall_retention_days,
            under: None,
            skip_in_jobs: true,
            tags: inline.then_some(tag_list.as_slice()),
        },
    )
    .await
    .unwrap()
    .into_iter()
    .map(|row| (row.id, row.rule_idx))
    .collect();
    let files = pdb::host_files(&mut tx, h).await.unwrap();
    tx.commit().await.unwrap();
    app.close().await;
    assert_eq!(files.len(), n);
    let rust: BTreeSet<(Uuid, i32)> = files
        .iter()
        .filter_map(|f| match alto_rules::decide(&rules, &hf, &facts(f), &tags, &es) {
            Decision::Candidate { rule } => Some((f.id, rule as i32)),
            _ => None,
        })
        .collect();
    if sql != rust {
        let only_sql: Vec<_> = sql.difference(&rust).collect();
        let only_rust: Vec<_> = rust.difference(&sql).collect();
        let show = |ids: &[&(Uuid, i32)]| -> Vec<String> {
            ids.iter()
                .take(5)
                .map(|(id, ri)| {
                    let f = files.iter().find(|f| f.id == *id).unwrap();
                    format!("{:?} rule {ri}: {f:?}", f.file_path)
                })
                .collect()
        };
        panic!("seed {seed}: SQL and evaluator disagree\nrules: {specs:#?}\nonly SQL: {:#?}\nonly Rust: {:#?}",
            show(&only_sql), show(&only_rust));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn sql_selection_equals_the_reference_evaluator(seed in any::<u64>()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let db = TestDb::new().await;
            one_case(&db, seed).await;
        });
    }
}
