//! `keelctl completions bash|zsh|fish`: each script is accepted by its
//! shell's parser where that shell is installed (bash always is), bash
//! completes subcommands and flags from it, and an unknown shell is refused
//! with a sentence naming the ones there are.

use std::process::{Command, Stdio};

use anyhow::Result;
use keel_tests::bin;

fn script(shell: &str) -> Result<String> {
    let out = Command::new(bin("keelctl"))
        .args(["completions", shell])
        .stdin(Stdio::null())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// What bash completes for the words of `line` (the last one being typed).
fn bash_complete(script_path: &std::path::Path, words: &[&str]) -> Result<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let prev = words[words.len().saturating_sub(2)];
    let cur = words[words.len() - 1];
    let cmd = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; _keelctl keelctl '{cur}' '{prev}'; echo \"${{COMPREPLY[*]}}\"",
        script_path.display(),
        quoted.join(" "),
        words.len() - 1
    );
    let out = Command::new("bash").args(["-c", &cmd]).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

#[test]
fn bash_completes_subcommands_and_flags() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("keelctl.bash");
    std::fs::write(&path, script("bash")?)?;
    let parsed = Command::new("bash").arg("-n").arg(&path).status()?;
    anyhow::ensure!(parsed.success(), "bash -n refused the script");
    anyhow::ensure!(bash_complete(&path, &["keelctl", "reb"])? == "rebalance");
    let sub = bash_complete(&path, &["keelctl", "rebalance", ""])?;
    for word in ["status", "execute", "pause", "--log-format"] {
        anyhow::ensure!(
            sub.split(' ').any(|w| w == word),
            "{word} missing in {sub:?}"
        );
    }
    let shells = bash_complete(&path, &["keelctl", "completions", ""])?;
    anyhow::ensure!(
        shells.contains("bash") && shells.contains("fish"),
        "{shells:?}"
    );
    Ok(())
}

#[test]
fn zsh_and_fish_scripts_parse_where_those_shells_exist() -> Result<()> {
    for (shell, check) in [("zsh", ["-n"]), ("fish", ["--no-execute"])] {
        let text = script(shell)?;
        anyhow::ensure!(text.contains("keelctl"), "{shell}: {text}");
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(format!("keelctl.{shell}"));
        std::fs::write(&path, &text)?;
        match Command::new(shell).args(check).arg(&path).status() {
            Ok(s) => anyhow::ensure!(s.success(), "{shell} refused its script"),
            // Not installed here: the content check above still ran.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[test]
fn an_unknown_shell_is_refused_with_the_choices() -> Result<()> {
    let out = Command::new(bin("keelctl"))
        .args(["completions", "tcsh"])
        .stdin(Stdio::null())
        .output()?;
    anyhow::ensure!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(err.contains("bash, zsh, fish"), "{err}");
    anyhow::ensure!(out.stdout.is_empty());
    Ok(())
}
