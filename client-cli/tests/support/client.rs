//! A clinician's workstation in tests: a `wardline` home and the account
//! secrets its user knows, and a ward of enrolled users.

use std::path::PathBuf;
use std::process::Command;

use super::{Run, Running, TestServer};

/// A workstation: one `wardline` home, and the account secrets its user
/// knows (the TOTP secret once enrolled).
pub struct Client {
    pub name: String,
    pub home: PathBuf,
    pub passphrase: String,
    pub password: String,
    pub totp_secret: Option<String>,
}

impl Client {
    pub fn new(root: &tempfile::TempDir, name: &str) -> Self {
        Self {
            name: name.to_owned(),
            home: root.path().join(name),
            passphrase: format!("{name}'s keystore passphrase"),
            password: format!("{name}'s password"),
            totp_secret: None,
        }
    }

    /// Another computer of the same user: a separate home.
    pub fn second_device(&self, root: &tempfile::TempDir) -> Self {
        Self {
            name: self.name.clone(),
            home: root.path().join(format!("{}-laptop", self.name)),
            passphrase: self.passphrase.clone(),
            password: self.password.clone(),
            totp_secret: self.totp_secret.clone(),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_wardline"));
        c.arg("--home").arg(&self.home).args(args);
        self.environment(&mut c);
        c
    }

    /// A whole command line as given (the program first; `--home` not
    /// added), run with this user's secrets in the environment, as the
    /// user would paste a command the client printed.
    pub fn command_line(&self, argv: &[String]) -> Command {
        let (program, args) = argv.split_first().expect("a program");
        let mut c = Command::new(program);
        c.args(args);
        self.environment(&mut c);
        c
    }

    fn environment(&self, c: &mut Command) {
        c.env("WARDLINE_PASSPHRASE", &self.passphrase)
            .env("WARDLINE_PASSWORD", &self.password)
            .env("WARDLINE_KDF_FAST", "1")
            .env_remove("WARDLINE_HOME")
            .env_remove("WARDLINE_SERVER")
            .env_remove("WARDLINE_CA")
            .env_remove("WARDLINE_PIN")
            .env_remove("WARDLINE_USERNAME")
            .env_remove("WARDLINE_ENROL_CODE");
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Running::start(&mut self.command(args)).finish()
    }

    pub fn secret(&self) -> &str {
        self.totp_secret.as_deref().expect("enrolled first")
    }

    /// Enrols as a script would: reads the TOTP secret from the first JSON
    /// line, then writes the authenticator's current code to standard input.
    pub fn enrol(&mut self, server: &TestServer, args: &[&str]) -> Run {
        self.enrol_with(server, args, &[])
    }

    pub fn enrol_with(&mut self, server: &TestServer, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = self.command(&[&["--json", "enrol"], args].concat());
        command.envs(env.iter().copied());
        let mut running = Running::start(&mut command);
        if let Some(first) = running.next_line() {
            let event: serde_json::Value =
                serde_json::from_str(&first).expect("the first line is JSON");
            if event["event"] == "totp" {
                let secret = event["totp_secret"].as_str().expect("a TOTP secret");
                running.answer(&server.totp_now(secret));
                self.totp_secret = Some(secret.to_owned());
            }
        }
        running.finish()
    }

    /// `wardline login` with the code for the next TOTP step.
    pub fn login(&self, server: &TestServer, extra: &[&str]) -> Run {
        let code = server.next_totp(self.secret());
        let args = [
            &["--json", "login", "--username", &self.name, "--totp", &code][..],
            extra,
        ]
        .concat();
        self.run(&args)
    }
}

/// Has `admin` create an account and returns its enrolment code.
pub fn add_user(admin: &Client, name: &str) -> String {
    let created = admin.run(&[
        "--json",
        "admin",
        "user",
        "add",
        name,
        "--display-name",
        name,
    ]);
    assert!(created.ok, "{}", created.stderr);
    created.event("user_created")["enrol_code"]
        .as_str()
        .expect("an enrolment code")
        .to_owned()
}

/// A server with an enrolled admin, alice and bob.
pub fn ward() -> (TestServer, tempfile::TempDir, Client, Client, Client) {
    let server = TestServer::start();
    let root = tempfile::tempdir().expect("tempdir");
    let mut admin = Client::new(&root, "admin");
    let enrolled = admin.enrol(
        &server,
        &["--server", &server.url, "--code", &server.admin_code],
    );
    assert!(enrolled.ok, "{}", enrolled.stderr);
    assert!(enrolled.event("enrolled")["device_id"].is_string());

    let mut users = Vec::new();
    for name in ["alice", "bob"] {
        let code = add_user(&admin, name);
        let mut client = Client::new(&root, name);
        let out = client.enrol(&server, &["--server", &server.url, "--code", &code]);
        assert!(out.ok, "{}", out.stderr);
        users.push(client);
    }
    let bob = users.pop().expect("bob");
    let alice = users.pop().expect("alice");
    (server, root, admin, alice, bob)
}

pub fn texts(run: &Run) -> Vec<String> {
    run.events()
        .into_iter()
        .filter(|e| e["event"] == "message")
        .map(|e| e["text"].as_str().expect("text").to_owned())
        .collect()
}

impl Client {
    /// Runs `wardline args` with `line` on standard input (then closed).
    pub fn run_answering(&self, args: &[&str], line: &str) -> Run {
        let mut running = Running::start(&mut self.command(args));
        running.answer(line);
        running.finish()
    }

    /// Starts a long-running `wardline args` (a chat), to be read and fed.
    pub fn start(&self, args: &[&str]) -> Running {
        Running::start(&mut self.command(args))
    }

    /// This device's id, from its keystore.
    pub fn device_id(&self) -> String {
        let keystore = wardline_cli::keystore::Keystore::open(
            &self.home,
            &wardline_protocol::Secret::new(self.passphrase.as_str()),
        )
        .expect("the keystore opens");
        keystore.state().device_id.to_string()
    }
}

/// The events called `name`.
pub fn events(run: &Run, name: &str) -> Vec<serde_json::Value> {
    run.events()
        .into_iter()
        .filter(|e| e["event"] == name)
        .collect()
}
