//! The manifest parser's tests: valid manifests, and each rule with the field it names.

use super::*;

const HELLO: &str = include_str!("../../../examples/hello/manifest.yaml");

fn err(text: &str) -> String {
    Manifest::parse(text.as_bytes())
        .expect_err("must not parse")
        .to_string()
}

#[test]
fn the_example_manifest_parses() {
    let m = Manifest::parse(HELLO.as_bytes()).expect("example parses");
    let web = &m.services["web"];
    assert_eq!(web.ports[0].expose, Expose::Http);
    assert_eq!(
        m.totals(),
        Totals {
            cpu_millis: 500,
            memory_mib: 256,
            storage_gib: 0
        }
    );
}

#[test]
fn totals_multiply_replicas() {
    let m = Manifest::parse(
        b"version: 1\nservices:\n  a:\n    image: x\n    replicas: 3\n    resources: {cpu: '0.5', memory: 100M, storage: 1Gi}\n",
    )
    .expect("parses");
    assert_eq!(
        m.totals(),
        Totals {
            cpu_millis: 1500,
            memory_mib: 3 * 96,
            storage_gib: 3
        }
    );
}

#[test]
fn an_alias_bomb_is_refused_before_it_expands() {
    // 9^7 copies of a 1,000-byte string: 4.7 GB once expanded, 1 KiB as text.
    let mut text = String::from("x0: &a0 \"");
    text.push_str(&"z".repeat(1000));
    text.push_str("\"\n");
    for i in 1..=7 {
        text.push_str(&format!(
            "x{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 9].join(",")
        ));
    }
    text.push_str("version: 1\nservices:\n  web:\n    image: x\n    args: *a7\n    resources: {cpu: 1, memory: 1Mi}\n");
    let started = std::time::Instant::now();
    let e = err(&text);
    assert!(e.contains("anchors and aliases are not allowed"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_millis(200));
}

#[test]
fn a_nul_byte_in_any_string_is_refused_and_never_echoed() {
    let svc = |extra: &str| {
        format!(
            "version: 1\nservices:\n  web:\n    image: x\n    resources: {{cpu: 1, memory: 1Mi}}\n{extra}"
        )
    };
    for (extra, field) in [
        ("    env: {\"A\\0B\": v}\n", "`services.web.env.A\\0B`"),
        ("    env: {A: \"v\\0\"}\n", "`services.web.env.A`"),
        ("    args: [\"ok\", \"a\\0b\"]\n", "`services.web.args[1]`"),
        ("    command: [\"\\0\"]\n", "`services.web.command[0]`"),
    ] {
        let e = err(&svc(extra));
        assert!(e.contains(field), "{extra}: {e}");
        assert!(!e.contains('\0'), "the message carries no NUL: {e:?}");
    }
    let image = "version: 1\nservices:\n  web:\n    image: \"x\\0\"\n    resources: {cpu: 1, memory: 1Mi}\n";
    assert!(err(image).contains("`services.web.image`"));
    let name = "version: 1\nservices:\n  \"w\\0\": {image: x, resources: {cpu: 1, memory: 1Mi}}\n";
    assert!(!err(name).contains('\0'));
}

#[test]
fn errors_name_the_field() {
    assert!(err("version: 2\nservices: {}\n").contains("`version`"));
    assert!(err("version: 1\nservices: {}\n").contains("`services`"));
    let bad_cpu =
        "version: 1\nservices:\n  web:\n    image: x\n    resources: {cpu: lots, memory: 1Mi}\n";
    assert!(
        err(bad_cpu).contains("`services.web.resources.cpu`"),
        "{}",
        err(bad_cpu)
    );
    let bad_port = "version: 1\nservices:\n  web:\n    image: x\n    ports: [{port: 0}]\n    resources: {cpu: 1, memory: 1Mi}\n";
    assert!(err(bad_port).contains("`services.web.ports[0].port`"));
    let unknown = "version: 1\nservices:\n  web:\n    image: x\n    imagee: y\n    resources: {cpu: 1, memory: 1Mi}\n";
    assert!(
        err(unknown).contains("unknown field `imagee`"),
        "{}",
        err(unknown)
    );
    let name =
        "version: 1\nservices:\n  Web_1:\n    image: x\n    resources: {cpu: 1, memory: 1Mi}\n";
    assert!(err(name).contains("`services.Web_1`"));
    assert!(err("services: [").contains("does not parse"));
    let svc = |extra: &str| {
        format!(
            "version: 1\nservices:\n  web:\n    image: x\n    resources: {{cpu: 1, memory: 1Mi}}\n{extra}"
        )
    };
    assert!(
        err(&svc("    volumes: [{name: v, mount: /a/../etc}]\n"))
            .contains("`services.web.volumes[0].mount`")
    );
    assert!(Manifest::parse(&[0xff, 0xfe]).is_err());
    for (extra, says) in [
        ("    idle_timeout: soon\n", "is not a duration"),
        ("    idle_timeout: 1s\n", "must be 5s to 168h"),
        (
            "    idle_timeout: 30s\n",
            "only a service with an `expose: http` port",
        ),
    ] {
        let e = err(&svc(extra));
        assert!(
            e.contains("`services.web.idle_timeout`") && e.contains(says),
            "{e}"
        );
    }
    for (extra, at, says) in [
        (
            "    allow: [\"0x0000000000000000000000000000000000000001\"]\n",
            "`services.web.allow`",
            "set `private: true`",
        ),
        (
            "    private: true\n    ports: [{port: 80, expose: http}]\n    allow: [\"0x12\"]\n",
            "`services.web.allow[0]`",
            "not an address",
        ),
        (
            "    private: true\n",
            "`services.web.private`",
            "expose: http",
        ),
    ] {
        let e = err(&svc(extra));
        assert!(e.contains(at) && e.contains(says), "{e}");
    }
    for (extra, at, says) in [
        (
            "    ports: [{port: 80, expose: http}]\n    domains: [\"Shop.Test\"]\n",
            "`services.web.domains[0]`",
            "lower-case hostname",
        ),
        (
            "    ports: [{port: 80, expose: http}]\n    domains: [\"localhost\"]\n",
            "`services.web.domains[0]`",
            "two labels",
        ),
        (
            "    domains: [\"shop.test\"]\n",
            "`services.web.domains`",
            "expose: http",
        ),
    ] {
        let e = err(&svc(extra));
        assert!(e.contains(at) && e.contains(says), "{e}");
    }
    let private = Manifest::parse(
        svc("    private: true\n    ports: [{port: 80, expose: http}]\n    allow: [\"0x70997970C51812dc3A010C7d01b50e0d17dc79C8\"]\n").as_bytes(),
    )
    .expect("valid");
    assert_eq!(private.services["web"].allowed().len(), 1);
    let sleepy = Manifest::parse(
        svc("    idle_timeout: 5m\n    ports: [{port: 80, expose: http}]\n").as_bytes(),
    )
    .expect("valid");
    assert_eq!(sleepy.services["web"].idle_timeout_s(), Some(300));
}

const SEALED: &str = "version: 1
secrets:
  key_version: 1
  names: [db_password, api-key]
  sealed: QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=
  tenant_copy: REVG
services:
  web:
    image: x
    env: {PLAIN: '1'}
    secret_env: {DB_PASSWORD: db_password, API_KEY: api-key}
    secret_files: {/etc/app/db.pass: db_password}
    volumes: [{name: data, mount: /data}]
    resources: {cpu: 100m, memory: 16Mi}
";

#[test]
fn sealed_secrets_parse_with_their_names_in_clear() {
    let m = Manifest::parse(SEALED.as_bytes()).expect("parses");
    let secrets = m.secrets.as_ref().expect("secrets");
    assert_eq!(secrets.names, ["db_password", "api-key"]);
    assert_eq!(
        secrets.envelopes(),
        ["QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=", "REVG"]
    );
    assert_eq!(m.services["web"].secret_env["DB_PASSWORD"], "db_password");
    assert_eq!(
        m.services["web"].secret_files["/etc/app/db.pass"],
        "db_password"
    );
}

#[test]
fn secret_rules_name_their_field() {
    for (from, to, says) in [
        ("key_version: 1", "key_version: 0", "`secrets.key_version`"),
        (
            "[db_password, api-key]",
            "[db_password, db_password]",
            "`secrets.names[1]`",
        ),
        (
            "[db_password, api-key]",
            "[Db, api-key]",
            "`secrets.names[0]`",
        ),
        ("sealed: QUJD", "sealed: QU!D", "`secrets.sealed`"),
        (
            "tenant_copy: REVG",
            "tenant_copy: ''",
            "`secrets.tenant_copy`",
        ),
        (
            "API_KEY: api-key",
            "API_KEY: nope",
            "`services.web.secret_env.API_KEY`",
        ),
        (
            "API_KEY: api-key",
            "PLAIN: api-key",
            "`services.web.secret_env.PLAIN`",
        ),
        (
            "API_KEY: api-key",
            "1BAD: api-key",
            "`services.web.secret_env.1BAD`",
        ),
        (
            "/etc/app/db.pass: db_password",
            "/etc/app/db.pass: nope",
            "`services.web.secret_files./etc/app/db.pass`: `nope` is not in secrets.names",
        ),
    ] {
        let text = SEALED.replacen(from, to, 1);
        assert_ne!(text, SEALED, "{from}");
        let e = err(&text);
        assert!(e.contains(says), "{to}: {e}");
    }
    let without = SEALED.replace(
        "secrets:\n  key_version: 1\n  names: [db_password, api-key]\n  sealed: QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\n  tenant_copy: REVG\n",
        "",
    );
    assert!(err(&without).contains("not in secrets.names"));
}

#[test]
fn secret_files_are_plain_paths_outside_volumes_and_runtime_trees() {
    let with = |files: &str| SEALED.replace("{/etc/app/db.pass: db_password}", files);
    for (files, says) in [
        ("{etc/x: db_password}", "an absolute file path"),
        ("{/etc/../x: db_password}", "an absolute file path"),
        ("{/etc/./x: db_password}", "an absolute file path"),
        ("{/etc//x: db_password}", "an absolute file path"),
        ("{/etc/x/: db_password}", "an absolute file path"),
        ("{/: db_password}", "an absolute file path"),
        ("{'/etc/a b': db_password}", "an absolute file path"),
        ("{\"/etc/\\0x\": db_password}", "an absolute file path"),
        (
            "{/proc/self/x: db_password}",
            "/proc belongs to the container runtime",
        ),
        (
            "{/dev: db_password}",
            "/dev belongs to the container runtime",
        ),
        (
            "{/data/pass: db_password}",
            "lies in volume `data` (mounted at /data)",
        ),
        ("{/data: db_password}", "lies in volume `data`"),
        (
            "{/etc/a: db_password, /etc/a/b: api-key}",
            "`services.web.secret_files./etc/a/b`: lies under the secret file /etc/a",
        ),
    ] {
        let text = with(files);
        assert_ne!(text, SEALED, "{files}");
        let e = err(&text);
        assert!(e.contains(says), "{files}: {e}");
    }
    let long = format!("{{/{}: db_password}}", "a".repeat(255));
    assert!(err(&with(&long)).contains("at most 255"));
    let many: Vec<String> = (0..33).map(|i| format!("/s/{i}: db_password")).collect();
    assert!(err(&with(&format!("{{{}}}", many.join(", ")))).contains("at most 32 files"));
    // Names alike but not nested are fine: /data2 is not in /data, /etc/ab not under /etc/a.
    Manifest::parse(
        with("{/data2: db_password, /etc/a: db_password, /etc/ab: api-key}").as_bytes(),
    )
    .expect("valid");
    let reserved = SEALED.replace(
        "{name: data, mount: /data}",
        "{name: berth-secrets, mount: /s}",
    );
    assert!(err(&reserved).contains("the name of the secret files' volume"));
}

#[test]
fn persistent_volumes_count_once_in_the_storage_reservation() {
    let m = Manifest::parse(
        b"version: 1\nservices:\n  db:\n    image: x\n    resources: {cpu: 1, memory: 1Mi, storage: 1Gi}\n    volumes:\n      - {name: data, mount: /data, persistent: true, size: 1500Mi}\n      - {name: tmp, mount: /tmp}\n",
    )
    .expect("parses");
    // 1 GiB ephemeral + 1500 MiB rounded up to 2 GiB.
    assert_eq!(m.totals().storage_gib, 3);
    assert_eq!(m.services["db"].persistent_gib(), 2);
}

#[test]
fn persistent_volume_rules_name_the_field() {
    let with = |volume: &str, replicas: u32| {
        err(&format!(
            "version: 1\nservices:\n  db:\n    image: x\n    replicas: {replicas}\n    resources: {{cpu: 1, memory: 1Mi}}\n    volumes: [{volume}]\n"
        ))
    };
    for (volume, replicas, field, words) in [
        (
            "{name: d, mount: /d, persistent: true}",
            1,
            "services.db.volumes[0].size",
            "needs a size",
        ),
        (
            "{name: d, mount: /d, size: 1Gi}",
            1,
            "services.db.volumes[0].size",
            "only a persistent volume",
        ),
        (
            "{name: d, mount: /d, persistent: true, size: lots}",
            1,
            "services.db.volumes[0].size",
            "not a size",
        ),
        (
            "{name: d, mount: /d, persistent: true, size: 0}",
            1,
            "services.db.volumes[0].size",
            "above zero",
        ),
        (
            "{name: d, mount: /d, persistent: true, size: 17Ti}",
            1,
            "services.db.volumes[0].size",
            "at most 16Ti",
        ),
        (
            "{name: d, mount: /d, persistent: true, size: 1Gi}",
            2,
            "services.db.volumes[0].persistent",
            "one replica",
        ),
        (
            "{name: d, mount: /d, persistent: true, size: 1Gi, host_path: /srv}",
            1,
            "services.db.volumes[0].host_path",
            "not a host directory",
        ),
        (
            "{name: d, mount: /d, persistent: yes please, size: 1Gi}",
            1,
            "",
            "persistent",
        ),
    ] {
        let e = with(volume, replicas);
        assert!(e.contains(field) && e.contains(words), "{volume}: {e}");
    }
}

/// The cases the console's validator is tested against too (`console/test/manifest.test.ts`).
#[test]
fn the_shared_vectors_parse_as_they_say() {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../../vectors/manifests.json")).expect("vectors");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 50);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let text = case["manifest"].as_str().expect("manifest");
        let expect = &case["expect"];
        let got = Manifest::parse(text.as_bytes());
        if let Some(ok) = expect.get("ok") {
            let t = got.unwrap_or_else(|e| panic!("{name}: {e}")).totals();
            assert_eq!(
                [t.cpu_millis, t.memory_mib, t.storage_gib],
                [&ok["cpu_millis"], &ok["memory_mib"], &ok["storage_gib"]]
                    .map(|v| v.as_u64().expect("number")),
                "{name}"
            );
        } else if let Some(want) = expect.get("field") {
            match got {
                Err(SchemaError::Field { field, .. }) => {
                    assert_eq!(Some(field.as_str()), want.as_str(), "{name}")
                }
                other => panic!("{name}: expected a field error, got {other:?}"),
            }
        } else {
            assert!(
                matches!(got, Err(SchemaError::Syntax(_))),
                "{name}: expected a syntax error, got {got:?}"
            );
        }
    }
}
