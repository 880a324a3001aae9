//! The web console in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! driven through WebDriver with fantoccini): the application on port 0 with a SQLite
//! database and a local sink, as the API tests start it. Screenshots of the main screens are
//! saved under `target/console-screenshots/`.

mod browser;
#[path = "../api/helpers.rs"]
mod helpers;
#[path = "../common/mariadb.rs"]
mod mariadb;
#[path = "../api/sink.rs"]
mod sink;

mod budget;
mod cluster;
mod flow;
mod isolation;
mod keys;
mod notify;
