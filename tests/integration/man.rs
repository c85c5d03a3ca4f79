//! The committed man page is what the clap definition generates. Regenerate it with
//! `TWTUNE_BLESS=1 cargo test man_page`.

use std::path::PathBuf;

use clap::CommandFactory;

fn generated() -> String {
    let mut page = Vec::new();
    clap_mangen::Man::new(twtune::cli::Cli::command()).section("8").render(&mut page).expect("render man page");
    String::from_utf8(page).expect("utf-8 man page")
}

#[test]
fn man_page_is_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("man/twtune.8");
    let page = generated();
    if std::env::var_os("TWTUNE_BLESS").is_some() {
        std::fs::write(&path, &page).expect("write man page");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == page, "man/twtune.8 is stale: run TWTUNE_BLESS=1 cargo test man_page and commit it");
}
