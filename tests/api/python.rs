//! Python programs the tests run as real peers of the service (an SMTP server, a webhook
//! receiver that checks signatures with the Standard Webhooks reference library). Their
//! packages, pinned in `tests/support/requirements.txt`, are installed from PyPI into a
//! virtual environment under the target directory the first time a test needs them, once for
//! all test processes; `python3` with its `venv` module must be installed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

const REQUIREMENTS: &str = include_str!("../support/requirements.txt");

fn venv_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-venv")
}

/// The directory of the tests' support programs (`tests/support`).
pub fn support_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support")
}

/// The virtual environment's interpreter, with the requirements installed.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = venv_dir();
        let python = venv.join("bin/python");
        // The marker names the requirements it was made for: changed ones are installed anew.
        let marker = venv.join(format!("ready-{:016x}", fingerprint(REQUIREMENTS)));
        if marker.exists() {
            return python;
        }
        let _lock = DirLock::take(&venv.with_extension("lock"));
        if !marker.exists() {
            install(&venv, &python);
            std::fs::write(&marker, REQUIREMENTS)
                .expect("writing the virtual environment's marker");
        }
        python
    })
}

fn install(venv: &Path, python: &Path) {
    let _ = std::fs::remove_dir_all(venv);
    run(Command::new("python3").args(["-m", "venv"]).arg(venv));
    run(Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(support_dir().join("requirements.txt")));
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?} (the tests need python3 with venv): {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn fingerprint(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// A lock between test processes: a directory only one can create.
struct DirLock(PathBuf);

impl DirLock {
    fn take(path: &Path) -> Self {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("the target directory");
        for _ in 0..1200 {
            match std::fs::create_dir(path) {
                Ok(()) => return DirLock(path.to_owned()),
                Err(_) => std::thread::sleep(Duration::from_millis(250)),
            }
        }
        panic!(
            "{} stayed locked for five minutes; remove it if no test is running",
            path.display()
        );
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn the_peers_packages_are_installed() {
    let output = Command::new(python())
        .args(["-c", "import aiosmtpd, standardwebhooks"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(support_dir().join("requirements.txt").exists());
}
