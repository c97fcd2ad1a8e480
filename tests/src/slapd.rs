//! A real OpenLDAP `slapd` on loopback (Debian's slapd and ldap-utils, installed by
//! `scripts/deps test`), for the `ldap` account backend's tests: a directory
//! `dc=example,dc=test` with people under `ou=people` (inetOrgPerson, `mail` = the
//! address, `{SSHA}` passwords), a service account `cn=postern,dc=example,dc=test` that may
//! read, groups (groupOfNames) under `ou=groups`, StartTLS on the `ldap://` port and an `ldaps://` port, a self-signed certificate
//! for `localhost`. Changes go through the admin (rootdn) with ldapmodify and friends, as
//! an admin's tools would.

use std::io::Write as _;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SUFFIX: &str = "dc=example,dc=test";
pub const PEOPLE: &str = "ou=people,dc=example,dc=test";
pub const GROUPS: &str = "ou=groups,dc=example,dc=test";
pub const SERVICE_DN: &str = "cn=postern,dc=example,dc=test";
pub const SERVICE_PASSWORD: &str = "service pw";
const ROOT_DN: &str = "cn=admin,dc=example,dc=test";
const ROOT_PASSWORD: &str = "admin pw";

pub struct Slapd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// `ldap://` (StartTLS).
    pub ldap_port: u16,
    /// `ldaps://`.
    pub ldaps_port: u16,
}

fn ssha(password: &str) -> String {
    let out = Command::new("slappasswd")
        .args(["-s", password])
        .output()
        .expect("slappasswd (slapd) is needed: scripts/deps test installs it");
    assert!(out.status.success(), "slappasswd");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn person(uid: &str, mail: &str, password: &str) -> String {
    format!(
        "dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n\
         mail: {mail}\nuserPassword: {}\n\n",
        ssha(password)
    )
}

impl Slapd {
    /// Starts slapd with these (uid, address, password) people.
    pub fn start(people: &[(&str, &str, &str)]) -> Slapd {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir(d.join("db")).expect("db");
        let key =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
        std::fs::write(d.join("cert.pem"), key.cert.pem()).expect("cert");
        std::fs::write(d.join("key.pem"), key.signing_key.serialize_pem()).expect("key");
        std::fs::write(
            d.join("slapd.conf"),
            format!(
                "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
                 include /etc/ldap/schema/inetorgperson.schema\ninclude /etc/ldap/schema/nis.schema\n\
                 modulepath /usr/lib/ldap\nmoduleload back_mdb\npidfile {d}/slapd.pid\n\
                 TLSCertificateFile {d}/cert.pem\nTLSCertificateKeyFile {d}/key.pem\n\
                 database mdb\nmaxsize 10485760\nsuffix \"{SUFFIX}\"\n\
                 rootdn \"{ROOT_DN}\"\nrootpw {}\ndirectory {d}/db\n\
                 access to attrs=userPassword by self write by anonymous auth by * none\n\
                 access to * by dn.exact=\"{SERVICE_DN}\" read by self read by * none\n",
                ssha(ROOT_PASSWORD),
                d = d.display()
            ),
        )
        .expect("slapd.conf");
        let mut ldif = format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
             dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n\n\
             dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
             cn: postern\nuserPassword: {}\n\n",
            ssha(SERVICE_PASSWORD)
        );
        for (uid, mail, password) in people {
            ldif.push_str(&person(uid, mail, password));
        }
        std::fs::write(d.join("data.ldif"), ldif).expect("ldif");
        let added = Command::new("slapadd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-l")
            .arg(d.join("data.ldif"))
            .output()
            .expect("slapadd (slapd) is needed: scripts/deps test installs it");
        assert!(
            added.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&added.stderr)
        );
        let mut slapd = Slapd {
            dir,
            child: None,
            ldap_port: 0,
            ldaps_port: 0,
        };
        for _ in 0..8 {
            [slapd.ldap_port, slapd.ldaps_port] = crate::process::free_ports();
            if slapd.launch() {
                return slapd;
            }
        }
        panic!("slapd did not start: {}", slapd.log());
    }

    /// The certificate it presents (for a client's `ca_file`).
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// A file holding the service account's password (for `bind_password_file`).
    pub fn service_password_file(&self) -> PathBuf {
        let path = self.dir.path().join("service.secret");
        std::fs::write(&path, format!("{SERVICE_PASSWORD}\n")).expect("secret");
        path
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// Runs an ldap-utils tool as the admin with `input` on stdin.
    fn admin(&self, tool: &str, args: &[&str], input: &str) {
        let mut child = Command::new(tool)
            .args(["-x", "-H", &format!("ldap://127.0.0.1:{}", self.ldap_port)])
            .args(["-D", ROOT_DN, "-w", ROOT_PASSWORD])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ldap-utils is needed: scripts/deps test installs it");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("stdin");
        let out = child.wait_with_output().expect(tool);
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sets a person's password (effective at once).
    pub fn set_password(&self, uid: &str, password: &str) {
        self.admin(
            "ldapmodify",
            &[],
            &format!(
                "dn: uid={uid},{PEOPLE}\nchangetype: modify\nreplace: userPassword\nuserPassword: {}\n",
                ssha(password)
            ),
        );
    }

    /// Adds a person.
    pub fn add(&self, uid: &str, mail: &str, password: &str) {
        self.admin("ldapadd", &[], &person(uid, mail, password));
    }

    /// Adds a groupOfNames whose members are these people.
    pub fn add_group(&self, cn: &str, uids: &[&str]) {
        let members: String = uids
            .iter()
            .map(|u| format!("member: uid={u},{PEOPLE}\n"))
            .collect();
        self.admin(
            "ldapadd",
            &[],
            &format!("dn: cn={cn},{GROUPS}\nobjectClass: groupOfNames\ncn: {cn}\n{members}\n"),
        );
    }

    /// Replaces a group's members (at least one: groupOfNames requires it).
    pub fn set_group_members(&self, cn: &str, uids: &[&str]) {
        let members: String = uids
            .iter()
            .map(|u| format!("member: uid={u},{PEOPLE}\n"))
            .collect();
        self.admin(
            "ldapmodify",
            &[],
            &format!("dn: cn={cn},{GROUPS}\nchangetype: modify\nreplace: member\n{members}"),
        );
    }

    /// Deletes a person.
    pub fn delete(&self, uid: &str) {
        self.admin("ldapdelete", &[&format!("uid={uid},{PEOPLE}")], "");
    }

    /// Stops it (the ports refuse); [`Slapd::restart`] brings it back on the same ones.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.ldap_port)).is_ok() {
            assert!(Instant::now() < deadline, "slapd did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        assert!(self.launch(), "slapd did not start again: {}", self.log());
    }

    /// Starts slapd in the foreground on the current ports; true once both accept.
    fn launch(&mut self) -> bool {
        let d = self.dir.path();
        let log = std::fs::File::create(d.join("slapd.log")).expect("log");
        let child = Command::new("slapd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg(format!(
                "ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{}/",
                self.ldap_port, self.ldaps_port
            ))
            .args(["-d", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("slapd is needed: scripts/deps test installs it");
        let ports = [self.ldap_port, self.ldaps_port];
        self.child = crate::process::ready_within(child, Duration::from_secs(20), || {
            ports
                .iter()
                .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
        });
        self.child.is_some()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
