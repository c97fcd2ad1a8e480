//! The archive's own benchmark (not a test): writes `N` messages in batches of `BATCH`
//! (the XMPP server's writer does the same), then runs full-text searches and MAM-style
//! pages, and prints the write cost per message and search latency percentiles.
//!
//!   cargo run --release -p postern-store --example archive_bench -- [N] [BATCH] [URL]
//!
//! N defaults to 100000, BATCH to 64; URL to a fresh SQLite file in a temporary directory
//! (a PostgreSQL URL works too; its archive tables should be empty). To see what a part of
//! the schema costs: BENCH_NO_PARTIES=1 writes messages without party rows, and
//! BENCH_DROP="DROP INDEX archive_party_peer; ..." runs statements before writing.

use std::time::Instant;

use postern_store::{ArchiveFilter, NewArchived, Page, Party, Selection, Store};

const WORDS: [&str; 32] = [
    "meeting", "report", "lunch", "invoice", "deadline", "client", "project", "server", "budget",
    "review", "draft", "contract", "holiday", "schedule", "question", "answer", "release",
    "ticket", "support", "training", "quarter", "numbers", "design", "office", "travel", "update",
    "status", "coffee", "weekend", "monday", "friday", "thanks",
];

fn body(n: u64) -> String {
    // A cheap deterministic mix: 8 to 15 words.
    let mut x = n
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let len = 8 + (x % 8);
    let mut words = Vec::with_capacity(len as usize);
    for _ in 0..len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        words.push(WORDS[(x >> 59) as usize % WORDS.len()]);
    }
    if n.is_multiple_of(10_000) {
        words.push("zanzibar"); // a rare word: 1 in 10,000
    }
    words.join(" ")
}

fn message(n: u64, users: u64) -> NewArchived {
    let a = format!("user{}@example.com", n % users);
    let b = format!("user{}@example.com", (n * 7 + 3) % users);
    let body = body(n);
    NewArchived {
        uid: format!("bench-{n:012}"),
        stamp_us: 1_700_000_000_000_000 + n as i64 * 1000,
        sender: a.clone(),
        sender_resource: "phone".into(),
        recipient: b.clone(),
        recipient_resource: String::new(),
        kind: "chat".into(),
        xml: format!(
            "<message xmlns='jabber:client' from='{a}/phone' to='{b}' type='chat' id='m{n}'><body>{body}</body></message>"
        ),
        body,
        parties: if std::env::var("BENCH_NO_PARTIES").is_ok() {
            vec![]
        } else {
            vec![
                Party {
                    owner: a.clone(),
                    peer: b.clone(),
                    visible: true,
                },
                Party {
                    owner: b,
                    peer: a,
                    visible: true,
                },
            ]
        },
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).map_or(Ok(100_000), |s| s.parse())?;
    let batch: u64 = args.get(2).map_or(Ok(64), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let url = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.path().display()));
    let store = Store::connect(&url).await?;
    let users = 500;
    if let Ok(drop) = std::env::var("BENCH_DROP") {
        for stmt in drop.split(';').filter(|s| !s.trim().is_empty()) {
            sqlx::query(sqlx::AssertSqlSafe(stmt.to_owned()))
                .execute(store.pool())
                .await?;
        }
    }

    let t0 = Instant::now();
    let mut i = 0;
    let mut logged = 0;
    while i < n {
        let rows: Vec<_> = (i..(i + batch).min(n)).map(|k| message(k, users)).collect();
        store.archive_insert(&rows).await?;
        // As the server's writer does: party rows moved into their index in bulk.
        logged += rows.iter().map(|r| r.parties.len()).sum::<usize>();
        if logged >= 4096 {
            while store
                .archive_flush(postern_store::archive::FLUSH_ROWS)
                .await?
                > 0
            {}
            logged = 0;
        }
        i += batch;
    }
    while store
        .archive_flush(postern_store::archive::FLUSH_ROWS)
        .await?
        > 0
    {}
    let write = t0.elapsed();
    println!(
        "wrote {n} messages in batches of {batch}: {:.1} s, {:.1} us per message",
        write.as_secs_f64(),
        write.as_secs_f64() * 1e6 / n as f64
    );

    if store.backend() == postern_store::Backend::Postgres {
        // What autovacuum does on a live server: statistics for the planner. (The GIN
        // index's pending list may still be unmerged: see bench/README.md.)
        sqlx::query("ANALYZE").execute(store.pool()).await?;
    }

    let searches: [(&str, Selection); 4] = [
        ("rare word, everyone", Selection::Everyone),
        ("two common words, everyone", Selection::Everyone),
        (
            "two common words, one account",
            Selection::Account("user42@example.com".into()),
        ),
        (
            "rare word, one domain",
            Selection::Domain("example.com".into()),
        ),
    ];
    for (name, selection) in searches {
        let words = if name.starts_with("rare") {
            "zanzibar"
        } else {
            "invoice deadline"
        };
        let filter = ArchiveFilter {
            words: Some(words.into()),
            ..ArchiveFilter::default()
        };
        let mut times = Vec::new();
        let mut found = 0;
        for _ in 0..50 {
            let t = Instant::now();
            let (page, _) = store
                .archive_page(
                    &selection,
                    &filter,
                    Page {
                        limit: 50,
                        backwards: true,
                    },
                )
                .await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            found = page.len();
        }
        times.sort_by(f64::total_cmp);
        println!(
            "search {name:32} ({found:2} hits/page): p50 {:.2} ms, p99 {:.2} ms",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    // A MAM page of one account's archive, newest first.
    let mut times = Vec::new();
    for k in 0..50 {
        let own = Selection::Own(format!("user{k}@example.com"));
        let t = Instant::now();
        store
            .archive_page(
                &own,
                &ArchiveFilter::default(),
                Page {
                    limit: 50,
                    backwards: true,
                },
            )
            .await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "MAM page of 50, one account: p50 {:.2} ms, p99 {:.2} ms",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
    Ok(())
}
