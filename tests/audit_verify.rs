//! `lethe audit verify` accepts a real log and names the first bad record of
//! an edited, reordered or truncated-in-the-middle copy.

mod common;

use common::{AS_OF, Engine, TestDb, Workspace, now};

async fn a_real_log() -> (TestDb, Workspace, std::path::PathBuf) {
    let db = TestDb::create(Engine::Sqlite).await;
    db.seed(120, now()).await;
    let ws = Workspace::shipped(&db.url);
    let out = ws.lethe(&["run", "--as-of", AS_OF]);
    assert_eq!(out.code, 0, "{}", out.all());
    let file = ws.audit_files().pop().unwrap();
    (db, ws, file)
}

fn verify(ws: &Workspace, path: &std::path::Path) -> common::Output {
    ws.lethe(&["audit", "verify", path.to_str().unwrap()])
}

fn tampered(ws: &Workspace, name: &str, lines: Vec<String>) -> std::path::PathBuf {
    let dir = ws.path().join("tampered");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

#[tokio::test]
async fn verify_passes_on_a_real_log() {
    let (_db, ws, file) = a_real_log().await;
    let lines = std::fs::read_to_string(&file).unwrap().lines().count();
    assert!(lines > 5, "a run with batches");
    let out = verify(&ws, &file);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("chain ok, sealed"), "{}", out.stdout);
    let json = ws.lethe(&["audit", "verify", "--output", "json"]);
    assert_eq!(
        json.code,
        0,
        "verifies the configured folder by default: {}",
        json.all()
    );
    let v: serde_json::Value = serde_json::from_str(json.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(v["type"], "verify");
    assert_eq!(v["ok"], true);
}

#[tokio::test]
async fn verify_detects_an_edit() {
    let (_db, ws, file) = a_real_log().await;
    let mut lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let i = lines
        .iter()
        .position(|l| l.contains("\"type\":\"batch\""))
        .unwrap();
    let edited = lines[i].replacen("\"count\":", "\"count\":1", 1);
    assert_ne!(edited, lines[i]);
    lines[i] = edited;
    let out = verify(&ws, &tampered(&ws, "edited.jsonl", lines));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout.contains(&format!("BROKEN at record {}", i + 1)),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("edited"), "{}", out.stdout);
}

#[tokio::test]
async fn verify_detects_a_reorder() {
    let (_db, ws, file) = a_real_log().await;
    let mut lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.swap(2, 3);
    let out = verify(&ws, &tampered(&ws, "reordered.jsonl", lines));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stdout.contains("BROKEN at record 3"), "{}", out.stdout);
}

#[tokio::test]
async fn verify_detects_a_removal_in_the_middle() {
    let (_db, ws, file) = a_real_log().await;
    let mut lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.remove(3);
    let out = verify(&ws, &tampered(&ws, "truncated.jsonl", lines));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stdout.contains("BROKEN at record 4"), "{}", out.stdout);
    assert!(out.stdout.contains("removed"), "{}", out.stdout);
}

#[tokio::test]
async fn verify_flags_a_log_cut_at_its_end() {
    let (_db, ws, file) = a_real_log().await;
    let mut lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.pop();
    let out = verify(&ws, &tampered(&ws, "cut.jsonl", lines));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stdout.contains("NOT sealed"), "{}", out.stdout);
}
