//! `GET /status`: the public status page, for merchants and their staff to
//! look at instead of calling support. It says in plain words whether the
//! service and its database link are working, since when, and the last
//! changes of the link, newest first.
//!
//! Rendered on the server from what the health layer knows (it never touches
//! the database), readable without JavaScript; it refreshes itself with a
//! meta refresh. Everything interpolated is HTML-escaped: the reasons of
//! changes carry error texts from the database driver.

use std::fmt::Write;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};

use crate::health::ServiceState;
use crate::health::link::{LinkSnapshot, LinkState};
use crate::http::AppState;

/// Seconds between the page's own reloads.
const REFRESH_S: u32 = 30;

const STYLE: &str = "\
body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}\
main{max-width:46rem;margin:0 auto;padding:1.5rem}\
h1{font-size:1.4rem;margin:0 0 1rem}h2{font-size:1.1rem;margin:2rem 0 .5rem}\
.banner{border-radius:.5rem;padding:1rem 1.25rem;color:#fff}\
.banner p{margin:.25rem 0}.headline{font-size:1.3rem;font-weight:600}\
.ok{background:#1f7a3f}.degraded{background:#a35c00}.unavailable{background:#b3261e}\
table{width:100%;border-collapse:collapse;background:#fff;border-radius:.5rem}\
th,td{text-align:left;padding:.6rem .8rem;border-bottom:1px solid #e3e6ea}\
.pill{display:inline-block;padding:0 .6rem;border-radius:1rem;color:#fff;font-size:.9rem}\
ol{list-style:none;padding:0;margin:0}\
li{background:#fff;border-radius:.5rem;padding:.6rem .8rem;margin:.4rem 0}\
.reason,.muted{color:#5b6472;font-size:.9rem}footer{margin-top:2rem}";

/// Everything the page shows, read from the health layer at one moment.
pub struct View {
    pub service: ServiceState,
    pub since: DateTime<Utc>,
    pub link: LinkSnapshot,
    /// Whether the health layer watches the link at all (it can be switched off).
    pub monitored: bool,
    pub now: DateTime<Utc>,
}

pub async fn page(State(state): State<AppState>) -> Response {
    let (service, since) = state.gate.service_state();
    let view = View {
        service,
        since,
        link: state.gate.link(),
        monitored: state.gate.enabled(),
        now: Utc::now(),
    };
    let mut response = render(&view).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // A cached copy would show a state that is over; the page is cheap.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub fn render(view: &View) -> String {
    let (headline, explanation) = service_words(view.service);
    let service_class = view.service.as_str();
    let mut html = String::with_capacity(4096);
    // Writing to a String cannot fail.
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">\n\
         <title>tillsync status: {headline}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n\
         <h1>tillsync status</h1>\n\
         <section class=\"banner {service_class}\" id=\"service\" data-state=\"{service_class}\">\n\
         <p class=\"headline\">{headline}</p>\n<p>{explanation}</p>\n<p>{since}</p>\n</section>\n",
        since = since_words(view.since, view.now),
    );
    components(&mut html, view);
    changes(&mut html, view);
    let _ = write!(
        html,
        "<footer class=\"muted\">Updated {now}. This page reloads itself every {REFRESH_S} seconds.</footer>\n\
         </main>\n</body>\n</html>\n",
        now = time_tag(view.now),
    );
    html
}

fn components(html: &mut String, view: &View) {
    let link = &view.link;
    let probe = match (view.monitored, link.last_probe_latency) {
        (false, _) => "not monitored on this instance".to_owned(),
        // Only answered probes have a latency: while the link is down the
        // last one that answered may be long ago, so say which it is.
        (true, Some(latency)) => format!(
            "the last check that answered took {} ms",
            latency.as_millis()
        ),
        (true, None) => "no check has answered yet".to_owned(),
    };
    let _ = write!(
        html,
        "<h2>Components</h2>\n<table>\n\
         <tr id=\"api\"><th>Sales sync API</th><td>{api}</td><td>{api_since}</td></tr>\n\
         <tr id=\"database\" data-state=\"{link_state}\"><th>Database link</th><td>{db}</td>\
         <td>{db_since}<br><span class=\"muted\">{probe}</span></td></tr>\n</table>\n",
        api = pill(view.service.as_str()),
        api_since = since_words(view.since, view.now),
        link_state = link.state.as_str(),
        db = pill(link.state.as_str()),
        db_since = since_words(link.since, view.now),
        probe = escape(&probe),
    );
}

fn changes(html: &mut String, view: &View) {
    html.push_str("<h2>Recent changes</h2>\n");
    if view.link.transitions.is_empty() {
        let _ = writeln!(
            html,
            "<p class=\"muted\">No changes since this instance started ({}).</p>",
            time_tag(view.link.since)
        );
        return;
    }
    html.push_str("<ol id=\"changes\">\n");
    for change in view.link.transitions.iter().rev() {
        let _ = writeln!(
            html,
            "<li data-from=\"{from}\" data-to=\"{to}\">{at} ({ago} ago): database link \
             <strong>{from_words}</strong> &rarr; <strong>{to_words}</strong><br>\
             <span class=\"reason\">{reason}</span></li>",
            from = change.from.as_str(),
            to = change.to.as_str(),
            at = time_tag(change.at),
            ago = escape(&human(view.now - change.at)),
            from_words = state_words(change.from),
            to_words = state_words(change.to),
            reason = escape(&change.reason),
        );
    }
    html.push_str("</ol>\n");
}

fn service_words(state: ServiceState) -> (&'static str, &'static str) {
    match state {
        ServiceState::Ok => (
            "All systems operational",
            "Sales from your tills are synced as they arrive.",
        ),
        ServiceState::Degraded => (
            "Degraded performance",
            "Sales are still accepted, but some requests are slow or asked to retry. \
             Tills retry by themselves; no sale is lost.",
        ),
        ServiceState::Unavailable => (
            "Service unavailable",
            "Sales cannot be stored right now. Tills keep selling and keep every sale; \
             they send them by themselves when the service is back.",
        ),
    }
}

fn state_words(state: LinkState) -> &'static str {
    match state {
        LinkState::Ok => "operational",
        LinkState::Degraded => "degraded",
        LinkState::Unavailable => "unavailable",
    }
}

fn pill(state: &'static str) -> String {
    let words = match state {
        "ok" => "Operational",
        "degraded" => "Degraded",
        _ => "Unavailable",
    };
    format!("<span class=\"pill {state}\">{words}</span>")
}

fn since_words(since: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!(
        "Since {} (for {})",
        time_tag(since),
        escape(&human(now - since))
    )
}

/// An absolute UTC time, readable and machine-readable.
fn time_tag(at: DateTime<Utc>) -> String {
    format!(
        "<time datetime=\"{}\">{}</time>",
        escape(&at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        escape(&at.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
    )
}

/// "45 s", "3 min", "2 h 5 min", "3 days": how long, to a person.
fn human(elapsed: TimeDelta) -> String {
    let s = elapsed.num_seconds().max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..172_800 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} days", s / 86_400),
    }
}

/// Text for HTML element content and quoted attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::link::Transition;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        rfc3339.parse().unwrap()
    }

    fn view(transitions: Vec<Transition>) -> View {
        View {
            service: ServiceState::Ok,
            since: at("2026-11-21T08:03:00Z"),
            link: LinkSnapshot {
                state: LinkState::Ok,
                since: at("2026-11-21T08:03:00Z"),
                last_probe_latency: Some(std::time::Duration::from_millis(3)),
                transitions,
            },
            monitored: true,
            now: at("2026-11-21T08:06:30Z"),
        }
    }

    fn change(at_: &str, from: LinkState, to: LinkState, reason: &str) -> Transition {
        Transition {
            at: at(at_),
            from,
            to,
            reason: reason.to_owned(),
        }
    }

    #[test]
    fn markup_in_a_reason_is_shown_as_text_not_run() {
        let html = render(&view(vec![change(
            "2026-11-21T08:01:00Z",
            LinkState::Ok,
            LinkState::Unavailable,
            "probe failed: <script>alert('x')</script> & \"more\"",
        )]));
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains(
            "probe failed: &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;more&quot;"
        ));
    }

    #[test]
    fn the_page_says_the_state_since_when_and_for_how_long() {
        let html = render(&view(Vec::new()));
        assert!(html.contains("All systems operational"));
        assert!(html.contains(">2026-11-21 08:03:00 UTC</time> (for 3 min)"));
        assert!(html.contains("the last check that answered took 3 ms"));
        assert!(html.contains("No changes since this instance started"));
    }

    #[test]
    fn changes_are_listed_newest_first() {
        let html = render(&view(vec![
            change(
                "2026-11-21T08:01:00Z",
                LinkState::Ok,
                LinkState::Unavailable,
                "reason one",
            ),
            change(
                "2026-11-21T08:03:00Z",
                LinkState::Unavailable,
                LinkState::Ok,
                "reason two",
            ),
        ]));
        let two = html.find("reason two").unwrap();
        let one = html.find("reason one").unwrap();
        assert!(two < one, "newest first");
        assert!(html.contains("(3 min ago)"));
    }

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(human(TimeDelta::seconds(45)), "45 s");
        assert_eq!(human(TimeDelta::seconds(200)), "3 min");
        assert_eq!(human(TimeDelta::seconds(2 * 3600 + 5 * 60)), "2 h 5 min");
        assert_eq!(human(TimeDelta::days(3)), "3 days");
        assert_eq!(
            human(TimeDelta::seconds(-2)),
            "0 s",
            "clock skew is not negative time"
        );
    }
}
