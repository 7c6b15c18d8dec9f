use clap::Parser;

use super::*;

#[derive(Parser)]
struct Harness {
    #[command(flatten)]
    args: LoadtestArgs,
}

fn parse(extra: &[&str]) -> Result<LoadtestArgs, clap::Error> {
    let mut argv = vec![
        "loadtest",
        "--url",
        "http://127.0.0.1:8080",
        "--admin-token",
        "tsa_x",
    ];
    argv.extend_from_slice(extra);
    Harness::try_parse_from(argv).map(|h| h.args)
}

#[test]
fn defaults_are_the_documented_ones() {
    let args = parse(&[]).unwrap();
    assert_eq!(args.terminals, 50);
    assert_eq!(args.rate, 200.0);
    assert_eq!(args.batch_size, 100);
    assert_eq!(args.duration, Duration::from_secs(60));
    assert_eq!(args.drain_timeout, Duration::from_secs(60));
    assert_eq!(args.request_timeout, Duration::from_secs(10));
    assert_eq!(args.arrivals, Arrivals::Poisson);
    assert_eq!(args.settle_timeout, Duration::from_secs(30));
    assert_eq!(args.verify_concurrency, 8);
    assert!(parse(&["--verify-concurrency", "0"]).is_err());
    assert_eq!(
        parse(&["--verify-concurrency", "2"])
            .unwrap()
            .verify_concurrency,
        2
    );
    assert_eq!(
        args.behaviour(),
        StoreBehaviour {
            void_share: 0.02,
            refund_share: 0.05,
            cross_till_share: 0.3,
            offline_till: true,
            restore_rewind: 20,
            retire_till: true,
        }
    );
    assert!(args.voids_ahead);
    assert_eq!(args.shop(), Shop::default());
    assert_eq!(args.shop().day.starts_at_text(), "04:00");
}

#[test]
fn the_receipt_mix_and_the_business_day_can_be_set() {
    let args = parse(&[
        "--business-day-starts-at",
        "06:30",
        "--tax-on-top-share",
        "1",
        "--tip-share",
        "0",
        "--service-charge-share",
        "0.5",
        "--gift-card-share",
        "0.25",
        "--cash-rounding-share",
        "0",
        "--late-night-share",
        "0.75",
    ])
    .unwrap();
    let shop = args.shop();
    assert_eq!(shop.day.starts_at_text(), "06:30");
    assert_eq!(
        shop.mix,
        ReceiptMix {
            tax_on_top_share: 1.0,
            tip_share: 0.0,
            service_charge_share: 0.5,
            gift_card_share: 0.25,
            cash_rounding_share: 0.0,
            late_night_share: 0.75,
        }
    );
    for bad in ["4:00", "24:00", "04:60", "04:00:00", "noon"] {
        assert!(parse(&["--business-day-starts-at", bad]).is_err(), "{bad}");
    }
    assert!(parse(&["--tip-share", "1.01"]).is_err());
}

#[test]
fn each_store_behaviour_can_be_switched_off() {
    let args = parse(&[
        "--voids-ahead",
        "false",
        "--offline-till",
        "false",
        "--restore-rewind",
        "0",
        "--retire-till",
        "false",
        "--cross-till-share",
        "0",
    ])
    .unwrap();
    let behaviour = args.behaviour();
    assert!(!args.voids_ahead && !behaviour.offline_till && !behaviour.retire_till);
    assert_eq!(
        (behaviour.restore_rewind, behaviour.cross_till_share),
        (0, 0.0)
    );
}

#[test]
fn out_of_range_settings_are_refused() {
    assert!(parse(&["--batch-size", "501"]).is_err());
    assert!(parse(&["--terminals", "0"]).is_err());
    assert!(parse(&["--rate", "0"]).is_err());
    assert!(parse(&["--rate", "NaN"]).is_err());
    assert!(parse(&["--duration", "0s"]).is_err());
    assert!(parse(&["--void-share", "1.5"]).is_err());
    assert!(parse(&["--cross-till-share", "-0.1"]).is_err());
    assert!(parse(&["--retire-till", "maybe"]).is_err());
    let too_many = parse(&["--void-share", "0.6", "--refund-share", "0.6"]).unwrap();
    assert!(too_many.check().is_err());
    assert!(Harness::try_parse_from(["x", "--url", "ftp://h", "--admin-token", "t"]).is_err());
}

#[test]
fn the_admin_token_never_shows_in_debug_output() {
    let args = parse(&[]).unwrap();
    assert!(!format!("{args:?}").contains("tsa_x"));
}
