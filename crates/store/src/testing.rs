//! For the test suites of this crate and the ones above it: which PostgreSQL database they
//! run their PostgreSQL halves against.

/// The test database named by `POSTERN_TEST_POSTGRES_URL` (`scripts/test` and `.ci/run` start
/// one and set it). Unset, a test that needs it fails, so that a green run means PostgreSQL
/// was exercised; a developer without PostgreSQL opts out with
/// `POSTERN_TEST_SKIP_POSTGRES=1`, and then gets `None` (and a note on stderr).
///
/// # Panics
/// When neither variable is set.
pub fn postgres_url() -> Option<String> {
    if let Ok(url) = std::env::var("POSTERN_TEST_POSTGRES_URL")
        && !url.is_empty()
    {
        return Some(url);
    }
    if std::env::var("POSTERN_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
        eprintln!("note: POSTERN_TEST_SKIP_POSTGRES=1, PostgreSQL part skipped");
        return None;
    }
    panic!(
        "POSTERN_TEST_POSTGRES_URL is not set: run the tests with scripts/test (it starts \
         PostgreSQL), point it at a database, or set POSTERN_TEST_SKIP_POSTGRES=1 to skip \
         the PostgreSQL tests"
    );
}
