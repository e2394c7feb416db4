//! The packages, as an admin gets them: the .deb installed with `dpkg -i` into a private
//! systemd, an app dropped into /etc/sysmgr, systemd reloaded so the generator makes its
//! units, the app served and reloaded under load, the package removed without a generated
//! unit left behind; the same .deb on a machine where systemd is not running; the .rpm's
//! file list, config files, requirements and scriptlets; and the completions and man pages
//! the packages ship.
//!
//! The packages are built by `scripts/package` (scripts/test and CI run it before the tests):
//! building them here would add a release build and two tool installs to every `cargo test`.
//! The tests take the newest package in cargo's target directory and check that it is of
//! this version.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sysmgr_load::{get_blocking, Background, LoadConfig, Mode};

use crate::support::{bin_dir, free_port, sandbox, sysmgr, Run};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The newest file ending in `suffix` in `<target>/<sub>/`, built by scripts/package.
fn package(sub: &str, suffix: &str) -> PathBuf {
    let dir = bin_dir().parent().unwrap().join(sub);
    let newest = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("sysmgr") && n.ends_with(suffix))
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    let path = newest.unwrap_or_else(|| {
        panic!(
            "no `sysmgr*{suffix}` in `{}`; build the packages with `scripts/package` \
             (scripts/test does) and run the tests again",
            dir.display()
        )
    });
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.contains(&format!("{VERSION}-1")),
        "`{}` is not of version {VERSION}; run `scripts/package` again",
        path.display()
    );
    path
}

fn deb() -> PathBuf {
    package("debian", ".deb")
}

fn rpm() -> PathBuf {
    package("generate-rpm", ".rpm")
}

fn run(cmd: &mut Command) -> Run {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
        .into()
}

/// Runs `argv` inside the sandbox and asserts it succeeded; returns what it printed.
fn ok_in(sb: &sysmgr_sandbox::Sandbox, argv: &[&str]) -> Run {
    let r = run(sb.command(argv[0]).args(&argv[1..]));
    assert_eq!(
        r.code,
        0,
        "`{}` failed:\n{}{}",
        argv.join(" "),
        r.stdout,
        r.stderr
    );
    r
}

/// The generated files in the sandbox's `/run/systemd/generator` (relative paths), those
/// that carry sysmgr's header or are links to them.
fn generated(sb: &sysmgr_sandbox::Sandbox) -> Vec<String> {
    let dir = sb.root().join("run/systemd/generator");
    crate::support::tree(&dir)
        .into_iter()
        .filter(|entry| {
            let path = entry.split(" -> ").next().unwrap();
            let text = std::fs::read_to_string(dir.join(path)).unwrap_or_default();
            text.contains("\n# sysmgr-app: ") || entry.contains("hello")
        })
        .collect()
}

/// Asks `/` until every instance `1..=n` has answered; returns instance -> PID.
fn answers(addr: SocketAddr, n: u64) -> BTreeMap<u64, u64> {
    let mut seen = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Bounded: at most 3000 requests in at most 30 s, on loopback.
    for _ in 0..3000 {
        if seen.len() as u64 == n || Instant::now() > deadline {
            break;
        }
        let Ok((200, body)) = get_blocking(addr, "/", Duration::from_secs(5)) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        // `instance N pid P`
        let words: Vec<&str> = body.split_whitespace().collect();
        assert_eq!(words.len(), 4, "unexpected answer {body:?}");
        seen.insert(words[1].parse().unwrap(), words[3].parse().unwrap());
    }
    seen
}

// soak: zero loss
#[test]
fn deb_installs_generates_serves_reloads_and_removes_cleanly() {
    let deb = deb();
    let sb = sandbox();
    let r = ok_in(&sb, &["dpkg", "-i", deb.to_str().unwrap()]);
    assert!(
        !r.stderr.contains("warning"),
        "dpkg -i warned:\n{}",
        r.stderr
    );

    // What the package put in place.
    let root = sb.root();
    for link in [
        "/usr/lib/systemd/system-generators/sysmgr-generator",
        "/usr/lib/systemd/user-generators/sysmgr-user-generator",
    ] {
        // Resolved inside: seen from the host, /proc/PID/root resolves to the host's root.
        let target = ok_in(&sb, &["readlink", "-e", link]).stdout;
        assert_eq!(target.trim(), "/usr/bin/sysmgr", "{link}");
    }
    let conffiles = ok_in(&sb, &["dpkg-query", "-W", "-f=${Conffiles}", "sysmgr"]).stdout;
    assert!(
        conffiles.contains("/etc/sysmgr/example.toml.sample"),
        "{conffiles}"
    );
    // The example is valid and, being `.sample`, generates nothing.
    ok_in(
        &sb,
        &[
            "/usr/bin/sysmgr",
            "check",
            "/etc/sysmgr/example.toml.sample",
        ],
    );
    assert_eq!(generated(&sb), Vec::<String>::new());

    // An app file, then a reload: the generator writes the units.
    let port = free_port();
    let app = format!(
        "name = \"hello\"\ncommand = [\"/usr/bin/sysmgr-hello\"]\ninstances = 3\n\
         listen = [\"127.0.0.1:{port}\"]\nkill_timeout = 3000\n"
    );
    std::fs::write(root.join("etc/sysmgr/hello.toml"), app).unwrap();
    ok_in(&sb, &["systemctl", "daemon-reload"]);
    let units = generated(&sb);
    for unit in [
        "hello@.service",
        "hello.socket",
        "hello.target",
        "hello.target.wants/hello@3.service -> ../hello@.service",
    ] {
        assert!(
            units.iter().any(|u| u == unit),
            "`{unit}` was not generated: {units:?}"
        );
    }
    let service =
        std::fs::read_to_string(root.join("run/systemd/generator/hello@.service")).unwrap();
    assert!(service.contains("from /etc/sysmgr/hello.toml"), "{service}");

    // Started like any unit; every instance answers.
    ok_in(&sb, &["systemctl", "start", "hello.target"]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let before = answers(addr, 3);
    assert_eq!(
        before.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3],
        "not every instance answered: {before:?}\n{}",
        sb.journal("hello@*", 30)
    );

    // The packaged sysmgr reloads the generated app under load without a failed request.
    let load = Background::start(LoadConfig {
        connections: 4,
        mode: Mode::PerRequest,
        duration: Duration::from_secs(60),
        request_timeout: Duration::from_secs(5),
        ..LoadConfig::new(addr)
    });
    std::thread::sleep(Duration::from_millis(200));
    let reload = run(sb.command("/usr/bin/sysmgr").args(["reload", "hello"]));
    std::thread::sleep(Duration::from_millis(200));
    let report = load.stop();
    assert_eq!(reload.code, 0, "sysmgr reload failed:\n{}", reload.stderr);
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.failures);
    assert_eq!(report.hung, 0, "hung requests");
    assert!(report.ok > 20, "only {} requests answered", report.ok);
    let after = answers(addr, 3);
    assert_eq!(after.len(), 3, "{after:?}");
    for (instance, pid) in &after {
        assert_ne!(
            before[instance], *pid,
            "instance {instance} was not restarted"
        );
    }

    // Removal stops the app, and the reload in postrm leaves no generated unit behind.
    let r = ok_in(&sb, &["dpkg", "-r", "sysmgr"]);
    assert!(
        r.stdout.contains(
            "sysmgr: stopping the apps of the generator: hello.socket hello.target hello@*.service"
        ),
        "prerm did not stop the app:\n{}{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(generated(&sb), Vec::<String>::new());
    for unit in ["hello.target", "hello.socket", "hello@1.service"] {
        let load_state = ok_in(&sb, &["systemctl", "show", "-P", "LoadState", unit]).stdout;
        assert_eq!(load_state.trim(), "not-found", "{unit}");
        assert_eq!(crate::support::unit_state(&sb, unit), "inactive", "{unit}");
    }
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
        "something still listens on {addr}"
    );
    for gone in [
        "usr/bin/sysmgr",
        "usr/bin/sysmgr-hello",
        "usr/lib/systemd/system-generators/sysmgr-generator",
        "usr/lib/systemd/user-generators/sysmgr-user-generator",
    ] {
        assert!(
            std::fs::symlink_metadata(root.join(gone)).is_err(),
            "{gone} is still there"
        );
    }
    // The admin's app file stays; purge removes the example, still not the admin's file.
    assert!(root.join("etc/sysmgr/example.toml.sample").exists());
    ok_in(&sb, &["dpkg", "--purge", "sysmgr"]);
    assert!(!root.join("etc/sysmgr/example.toml.sample").exists());
    assert!(root.join("etc/sysmgr/hello.toml").exists());
}

/// A private root where systemd is not running: an overlay of `/` with an empty `/run`, in a
/// mount namespace that dies with the shell. Runs `script` there (`sh -c`, cwd `/`) and
/// returns what it printed. Nothing reaches the host: writes land in `dir/upper`.
fn without_systemd(dir: &Path, binds: &[&Path], script: &str) -> Run {
    for sub in ["upper", "work", "merged"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let mut setup = String::from(
        "set -eu\nm=$1/merged\n\
         mount -t overlay overlay -o \"lowerdir=/,upperdir=$1/upper,workdir=$1/work\" \"$m\"\n\
         mount -t proc proc \"$m/proc\"\n\
         mount -t tmpfs tmpfs \"$m/run\"\n\
         mount -t tmpfs tmpfs \"$m/tmp\"\n",
    );
    for bind in binds {
        let b = bind.display();
        setup.push_str(&format!(
            "mkdir -p \"$m{b}\"\nmount --rbind '{b}' \"$m{b}\"\n"
        ));
    }
    setup.push_str("cd \"$m\"\nexec chroot . sh -c \"$2\"\n");
    run(Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &setup,
            "sh",
        ])
        .arg(dir)
        .arg(script))
}

#[test]
fn deb_installs_and_removes_where_systemd_is_not_running() {
    let deb = deb();
    let dir = tempfile::Builder::new()
        .prefix("sysmgr-test-nosystemd-")
        .tempdir()
        .unwrap();
    let pkg_dir = deb.parent().unwrap();
    let script = format!(
        "set -e\n\
         test ! -e /run/systemd/system\n\
         dpkg -i '{deb}' 2>&1\n\
         test -x /usr/bin/sysmgr && test -L /usr/lib/systemd/system-generators/sysmgr-generator\n\
         dpkg -r sysmgr 2>&1\n\
         test ! -e /usr/bin/sysmgr\n\
         echo removed",
        deb = deb.display()
    );
    let r = without_systemd(dir.path(), &[pkg_dir], &script);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.ends_with("removed\n"), "{}", r.stdout);
    // The scripts did not call systemctl (which would complain that systemd is not PID 1),
    // nor stop anything.
    for word in ["systemd", "systemctl", "stopping"] {
        assert!(
            !r.stdout.contains(word) && !r.stderr.contains(word),
            "`{word}` in:\n{}{}",
            r.stdout,
            r.stderr
        );
    }
}

#[test]
fn rpm_installs_generates_and_erases_cleanly_under_systemd() {
    let rpm = rpm();
    let sb = sandbox();
    // Debian's rpm refuses to install without `--force-debian`, and its database knows no
    // package that provides systemd or the C library (dpkg's does): hence `--nodeps`. The
    // sandbox's overlay keeps the install, and the database, away from the host.
    let r = ok_in(
        &sb,
        &[
            "rpm",
            "-i",
            "--force-debian",
            "--nodeps",
            rpm.to_str().unwrap(),
        ],
    );
    assert!(!r.stderr.contains("systemctl"), "{}", r.stderr);

    // The generator wrapper runs the binary as `sysmgr-generator`.
    let port = free_port();
    let app = format!(
        "name = \"hello\"\ncommand = [\"/usr/bin/sysmgr-hello\"]\ninstances = 2\n\
         listen = [\"127.0.0.1:{port}\"]\nkill_timeout = 3000\n"
    );
    std::fs::write(sb.root().join("etc/sysmgr/hello.toml"), app).unwrap();
    ok_in(&sb, &["systemctl", "daemon-reload"]);
    let units = generated(&sb);
    assert!(
        units
            .iter()
            .any(|u| u == "hello.target.wants/hello@2.service -> ../hello@.service"),
        "{units:?}"
    );
    ok_in(&sb, &["systemctl", "start", "hello.target"]);
    let seen = answers(SocketAddr::from(([127, 0, 0, 1], port)), 2);
    assert_eq!(seen.len(), 2, "{seen:?}\n{}", sb.journal("hello@*", 30));

    // Erase: %preun stops the app, %postun's reload drops its units.
    let r = ok_in(&sb, &["rpm", "-e", "sysmgr"]);
    assert!(
        r.stdout
            .contains("sysmgr: stopping the apps of the generator: hello.socket"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(generated(&sb), Vec::<String>::new());
    assert_eq!(
        crate::support::unit_state(&sb, "hello@1.service"),
        "inactive"
    );
    assert!(std::fs::symlink_metadata(sb.root().join("usr/bin/sysmgr")).is_err());
    assert!(sb.root().join("etc/sysmgr/hello.toml").exists());
}

/// `rpm -qp ARGS FILE`.
fn rpm_query(args: &[&str]) -> String {
    let rpm_file = rpm();
    let r = run(Command::new("rpm").arg("-qp").args(args).arg(&rpm_file));
    assert_eq!(
        r.code, 0,
        "rpm {args:?} failed (Debian: apt-get install rpm):\n{}",
        r.stderr
    );
    r.stdout
}

#[test]
fn rpm_holds_the_files_of_the_deb() {
    let listed: BTreeSet<String> = rpm_query(&["-l"]).lines().map(String::from).collect();
    let mut expected: BTreeSet<String> = [
        "/etc/sysmgr/example.toml.sample",
        "/usr/bin/sysmgr",
        "/usr/bin/sysmgr-hello",
        "/usr/lib/systemd/system-generators/sysmgr-generator",
        "/usr/lib/systemd/user-generators/sysmgr-user-generator",
        "/usr/libexec/sysmgr/stop-generated-apps",
        "/usr/share/bash-completion/completions/sysmgr",
        "/usr/share/fish/vendor_completions.d/sysmgr.fish",
        "/usr/share/zsh/site-functions/_sysmgr",
        "/usr/share/man/man8/sysmgr-generator.8.gz",
        "/usr/share/doc/sysmgr/README.md",
        "/usr/share/doc/sysmgr/examples/node/app.js",
        "/usr/share/doc/sysmgr/examples/python/app.py",
        "/usr/share/doc/sysmgr/examples/pm2/app.js",
        "/usr/share/doc/sysmgr/examples/pm2/ecosystem.config.js",
        "/usr/lib/sysmgr/node/bridge.cjs",
    ]
    .map(String::from)
    .into();
    // One page per visible command, as `sysmgr man` writes them.
    let dir = tempfile::tempdir().unwrap();
    let r: Run = sysmgr()
        .args(["man"])
        .arg(dir.path())
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    for page in r.stdout.lines() {
        let name = Path::new(page).file_name().unwrap().to_string_lossy();
        expected.insert(format!("/usr/share/man/man1/{name}.gz"));
    }
    for doc in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/docs")).unwrap() {
        let name = doc.unwrap().file_name().to_string_lossy().into_owned();
        expected.insert(format!("/usr/share/doc/sysmgr/{name}"));
    }
    assert_eq!(
        listed.difference(&expected).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "in the .rpm but not expected"
    );
    assert_eq!(
        expected.difference(&listed).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "expected but not in the .rpm"
    );

    assert_eq!(
        rpm_query(&["--configfiles"]).trim(),
        "/etc/sysmgr/example.toml.sample"
    );
    let requires = rpm_query(&["--requires"]);
    assert!(
        requires.lines().any(|l| l == "systemd >= 239"),
        "{requires}"
    );
    let modes = rpm_query(&["--queryformat", "[%{FILEMODES:perms} %{FILENAMES}\n]"]);
    for line in [
        "-rwxr-xr-x /usr/bin/sysmgr",
        "-rwxr-xr-x /usr/bin/sysmgr-hello",
        "-rwxr-xr-x /usr/lib/systemd/system-generators/sysmgr-generator",
        "-rw-r--r-- /etc/sysmgr/example.toml.sample",
    ] {
        assert!(modes.lines().any(|l| l == line), "no `{line}` in:\n{modes}");
    }
}

#[test]
fn rpm_scriptlets_reload_systemd_only_where_it_runs_and_stop_apps_only_on_erase() {
    let scripts = rpm_query(&["--scripts"]);
    // rpm prints each scriptlet after a `NAME scriptlet (using /bin/sh):` line.
    let scriptlet = |name: &str| -> String {
        let start = scripts
            .find(&format!("{name} scriptlet"))
            .unwrap_or_else(|| panic!("no {name} scriptlet in:\n{scripts}"));
        let body = &scripts[start..];
        let body = &body[body.find('\n').unwrap() + 1..];
        let end = body
            .find(" scriptlet (using")
            .map_or(body.len(), |e| body[..e].rfind('\n').unwrap_or(0));
        body[..end].to_string()
    };
    let post = scriptlet("postinstall");
    assert!(
        post.contains("if [ -d /run/systemd/system ]; then\n\tsystemctl --system daemon-reload"),
        "{post}"
    );
    let preun = scriptlet("preuninstall");
    assert!(
        preun.contains("if [ \"$1\" -eq 0 ] && [ -d /run/systemd/system ]; then\n\t/usr/libexec/sysmgr/stop-generated-apps"),
        "{preun}"
    );
    let postun = scriptlet("postuninstall");
    assert!(
        postun.contains("if [ \"$1\" -eq 0 ] && [ -d /run/systemd/system ]; then\n\tsystemctl --system daemon-reload"),
        "{postun}"
    );
    // Each runs as sh would run it on the target: valid syntax.
    for (name, body) in [("post", &post), ("preun", &preun), ("postun", &postun)] {
        let r = run(Command::new("sh").args(["-n", "-c", body]));
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
    }
}

#[test]
fn bash_loads_the_completions() {
    let r: Run = sysmgr()
        .args(["completions", "bash"])
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    // bash sources the script and registers the function for `sysmgr`; asking it to complete
    // `sysmgr rel` offers `reload`.
    let script = format!(
        "{}\ncomplete -p sysmgr\nCOMP_WORDS=(sysmgr rel); COMP_CWORD=1; COMP_LINE='sysmgr rel'; \
         COMP_POINT=${{#COMP_LINE}}; _sysmgr sysmgr rel sysmgr; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        r.stdout
    );
    let out = run(Command::new("bash").args(["--norc", "-c", &script]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut lines = out.stdout.lines();
    assert!(lines.next().unwrap().ends_with(" sysmgr"), "{}", out.stdout);
    assert_eq!(lines.collect::<Vec<_>>(), ["reload"], "{}", out.stdout);

    for (shell, marker) in [("zsh", "#compdef sysmgr"), ("fish", "complete -c sysmgr")] {
        let r: Run = sysmgr()
            .args(["completions", shell])
            .output()
            .unwrap()
            .into();
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.contains(marker), "{shell}: {}", r.stdout);
        assert!(r.stdout.contains("reload"), "{shell}");
    }
}

#[test]
fn man_pages_render_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let r: Run = sysmgr().arg("man").arg(dir.path()).output().unwrap().into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut pages: Vec<PathBuf> = r.stdout.lines().map(PathBuf::from).collect();
    assert!(pages.len() > 10, "{pages:?}");
    pages.push(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/usr/share/man/man8/sysmgr-generator.8"
        )
        .into(),
    );
    for page in pages {
        assert!(page.exists(), "{}", page.display());
        // groff with every warning enabled, output thrown away: only the warnings remain.
        let out = run(Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&page));
        assert_eq!(out.code, 0, "{}: {}", page.display(), out.stderr);
        assert_eq!(out.stderr, "", "{}", page.display());
    }
    let top = std::fs::read_to_string(dir.path().join("sysmgr.1")).unwrap();
    assert!(top.contains(".BR sysmgr\\-generator (8),"), "{top}");
}

#[test]
fn completions_reject_an_unknown_shell() {
    let r: Run = sysmgr()
        .args(["completions", "tcsh"])
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("invalid value 'tcsh' for '<SHELL>'"),
        "{}",
        r.stderr
    );
}
