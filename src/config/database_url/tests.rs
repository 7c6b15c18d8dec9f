//! Unit tests of `DATABASE_URL` parsing: libpq's multi-host form, the
//! session attributes, and the errors a mistyped list gets.

use sqlx::ConnectOptions;

use super::*;

fn with_session_attrs(value: &str) -> Environment {
    Environment {
        session_attrs: Some(value.to_owned()),
        ..Environment::default()
    }
}

fn url(raw: &str) -> DatabaseUrl {
    parse(raw, &Environment::default()).unwrap_or_else(|e| panic!("{raw}: {e}"))
}

fn hosts(url: &DatabaseUrl) -> Vec<String> {
    url.candidates().iter().map(describe).collect()
}

#[test]
fn a_host_list_becomes_one_candidate_per_host_in_order() {
    let t = url(
        "postgresql://app:secret@db1.internal:5433,db2.internal:6432/tills?sslmode=disable&target_session_attrs=read-write",
    );
    assert_eq!(hosts(&t), ["db1.internal:5433", "db2.internal:6432"]);
    assert_eq!(t.session_attrs(), SessionAttrs::ReadWrite);
    for candidate in t.candidates() {
        assert_eq!(candidate.get_username(), "app");
        assert_eq!(candidate.get_database(), Some("tills"));
    }
}

#[test]
fn what_pg_autoctl_show_uri_prints_is_accepted() {
    let t = url(
        "postgres://autoctl_node@127.0.0.1:5501,127.0.0.1:5502/tillsync?target_session_attrs=read-write&sslmode=prefer",
    );
    assert_eq!(hosts(&t), ["127.0.0.1:5501", "127.0.0.1:5502"]);
    assert_eq!(t.session_attrs(), SessionAttrs::ReadWrite);
}

#[test]
fn a_host_without_a_port_gets_the_default_port() {
    let t = url("postgres://u@h1,h2:5433/db");
    assert_eq!(t.candidates()[0].get_port(), 5432);
    assert_eq!(t.candidates()[1].get_port(), 5433);
}

#[test]
fn one_host_keeps_working_as_before_and_defaults_to_any() {
    let t = url("postgres://postgres@127.0.0.1:5432/tillsync");
    assert_eq!(hosts(&t), ["127.0.0.1:5432"]);
    assert_eq!(t.session_attrs(), SessionAttrs::Any);
    assert_eq!(t.first().get_database(), Some("tillsync"));
}

#[test]
fn the_session_attrs_named_in_the_url_are_honoured_with_one_host_too() {
    let t = url("postgres://u@h/db?target_session_attrs=primary");
    assert_eq!(t.session_attrs(), SessionAttrs::Primary);
    let t = url("postgres://u@h/db?target_session_attrs=any");
    assert_eq!(t.session_attrs(), SessionAttrs::Any);
}

#[test]
fn the_environment_supplies_session_attrs_only_when_the_url_does_not() {
    let t = parse("postgres://u@h/db", &with_session_attrs("read-write")).unwrap();
    assert_eq!(t.session_attrs(), SessionAttrs::ReadWrite);
    let t = parse(
        "postgres://u@h/db?target_session_attrs=any",
        &with_session_attrs("read-write"),
    )
    .unwrap();
    assert_eq!(t.session_attrs(), SessionAttrs::Any);
    assert!(parse("postgres://u@h/db", &with_session_attrs("standby")).is_err());
}

#[test]
fn session_attrs_that_cannot_lead_to_a_primary_are_refused() {
    for value in ["read-only", "standby", "prefer-standby"] {
        let e = parse(
            &format!("postgres://h/db?target_session_attrs={value}"),
            &Environment::default(),
        )
        .unwrap_err();
        assert!(e.contains("not supported"), "{value}: {e}");
    }
    let e = parse(
        "postgres://h/db?target_session_attrs=readwrite",
        &Environment::default(),
    )
    .unwrap_err();
    assert!(e.contains("unknown target_session_attrs"), "{e}");
}

#[test]
fn bad_ports_name_the_entry_at_fault() {
    for (raw, entry) in [
        ("postgres://h1:5432,h2:port/db", "h2:port"),
        ("postgres://h1:99999,h2/db", "h1:99999"),
        ("postgres://h1:0,h2/db", "h1:0"),
        ("postgres://h1:,h2/db", "h1:"),
        ("postgres://h1:+5432,h2/db", "h1:+5432"),
        ("postgres://h1:5432,h2:54x/db", "h2:54x"),
    ] {
        let e = parse(raw, &Environment::default()).unwrap_err();
        assert!(
            e.contains("invalid port number") && e.contains(entry),
            "{raw}: {e}"
        );
    }
}

#[test]
fn an_empty_entry_in_a_list_is_refused() {
    let e = parse("postgres://u@h1,,h2/db", &Environment::default()).unwrap_err();
    assert!(e.contains("host 2 of the list is empty"), "{e}");
}

#[test]
fn percent_encoded_credentials_and_database_are_decoded_for_every_host() {
    let t = url("postgresql://till%40shop:p%40ss%2Fw%3Ard@h1:1,h2:2/my%20db");
    for candidate in t.candidates() {
        assert_eq!(candidate.get_username(), "till@shop");
        assert_eq!(candidate.get_database(), Some("my db"));
    }
    // The password is not readable back from sqlx's options; a URL that
    // decodes it wrongly still parses, so check what sqlx would send.
    let url = t.candidates()[1].to_url_lossy();
    assert_eq!(url.password(), Some("p%40ss%2Fw%3Ard"), "{url}");
}

#[test]
fn a_percent_encoded_session_attrs_value_is_decoded() {
    let t = url("postgres://h1,h2/db?target_session_attrs=read%2Dwrite");
    assert_eq!(t.session_attrs(), SessionAttrs::ReadWrite);
}

#[test]
fn ipv6_addresses_in_brackets_are_accepted_with_or_without_a_port() {
    let t = url("postgres://u@[::1]:5433,[fe80::1],10.0.0.2:5434/db");
    assert_eq!(t.candidates().len(), 3);
    assert_eq!(t.candidates()[0].get_port(), 5433);
    assert_eq!(t.candidates()[0].get_host(), "::1");
    assert_eq!(t.candidates()[1].get_port(), 5432);
    assert_eq!(t.candidates()[1].get_host(), "fe80::1");
    assert_eq!(hosts(&t)[2], "10.0.0.2:5434");
    let e = parse("postgres://u@[::1,h2/db", &Environment::default()).unwrap_err();
    assert!(e.contains("closing `]`"), "{e}");
    let e = parse("postgres://u@[::1]x,h2/db", &Environment::default()).unwrap_err();
    assert!(e.contains("expected `:port`"), "{e}");
}

#[test]
fn other_query_parameters_reach_every_candidate() {
    let t = url(
        "postgres://h1,h2/db?application_name=tills&target_session_attrs=read-write&sslmode=disable",
    );
    for candidate in t.candidates() {
        assert_eq!(candidate.get_application_name(), Some("tills"));
        assert!(matches!(
            candidate.get_ssl_mode(),
            sqlx::postgres::PgSslMode::Disable
        ));
    }
}

#[test]
fn a_host_list_in_query_parameters_is_refused_with_the_form_to_use() {
    let e = parse(
        "postgres:///db?host=h1,h2&port=1,2",
        &Environment::default(),
    )
    .unwrap_err();
    assert!(e.contains("postgresql://host1:port1,host2:port2"), "{e}");
}

#[test]
fn random_load_balancing_is_refused() {
    assert!(
        parse(
            "postgres://h1,h2/db?load_balance_hosts=random",
            &Environment::default()
        )
        .is_err()
    );
    assert!(
        parse(
            "postgres://h1,h2/db?load_balance_hosts=disable",
            &Environment::default()
        )
        .is_ok()
    );
}

#[test]
fn other_schemes_are_refused() {
    let e = parse("mysql://h1/db", &Environment::default()).unwrap_err();
    assert!(e.contains("must start with postgres://"), "{e}");
}

#[test]
fn starting_with_moves_a_candidate_to_the_front() {
    let t = url("postgres://h1:1,h2:2,h3:3/db").starting_with(2);
    assert_eq!(hosts(&t), ["h3:3", "h1:1", "h2:2"]);
}

#[test]
fn what_each_setting_accepts() {
    use SessionAttrs::*;
    // (in_recovery, read_only)
    assert!(Any.accepts(true, true));
    assert!(ReadWrite.accepts(false, false));
    assert!(!ReadWrite.accepts(false, true));
    assert!(!ReadWrite.accepts(true, true));
    assert!(Primary.accepts(false, true));
    assert!(!Primary.accepts(true, true));
}

/// Why this module exists: sqlx alone refuses the form the HA tools hand
/// out, and drops `target_session_attrs` from a one-host URL.
#[test]
fn sqlx_alone_refuses_a_host_list() {
    let e = "postgresql://h1:5432,h2:5432/db?target_session_attrs=read-write"
        .parse::<PgConnectOptions>()
        .unwrap_err();
    assert!(e.to_string().contains("invalid port number"), "{e}");
}

#[test]
fn the_root_certificate_file_named_in_the_url_is_read_as_libpq_reads_it() {
    // A missing file named in the URL is found (and refused) through the
    // percent-encoding, for every host of the list.
    let e = parse(
        "postgres://h1,h2/db?sslmode=require&sslrootcert=%2Fnonexistent%2Froot.crt",
        &Environment::default(),
    )
    .unwrap_err();
    assert!(
        e.contains("\"/nonexistent/root.crt\" does not exist"),
        "{e}"
    );
    // The last of sqlx's spellings counts, as in sqlx.
    let e = parse(
        "postgres://h/db?sslmode=require&sslrootcert=/elsewhere&ssl-ca=/nonexistent/ca.crt",
        &Environment::default(),
    )
    .unwrap_err();
    assert!(e.contains("/nonexistent/ca.crt"), "{e}");
    assert!(parse("postgres://h/db?sslmode=require", &Environment::default()).is_ok());
}
