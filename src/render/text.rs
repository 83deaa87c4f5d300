//! Terminal output: readable without colour; colour only when asked (on a TTY).

use std::fmt::Write;

use anstyle::{AnsiColor, Style};

use crate::domain::{Diagnosis, Severity, Verdict};

use super::strip_invisible as clean;

fn paint(on: bool, style: Style, text: &str) -> String {
    if on {
        format!("{style}{text}{style:#}")
    } else {
        text.to_owned()
    }
}

pub fn text(d: &Diagnosis, colour: bool) -> String {
    let bold = Style::new().bold();
    let red = AnsiColor::Red.on_default().bold();
    let green = AnsiColor::Green.on_default().bold();
    let yellow = AnsiColor::Yellow.on_default().bold();
    let dim = Style::new().dimmed();
    let mut out = String::new();
    let (verdict, style) = match d.verdict {
        Verdict::Blocked => ("BLOCKED", red),
        Verdict::Clear => ("CLEAR", green),
        Verdict::NotFound => ("NOT FOUND", red),
        Verdict::Ambiguous => ("AMBIGUOUS", yellow),
    };
    let _ = writeln!(
        out,
        "{}  {}",
        paint(colour, style, verdict),
        clean(&d.query)
    );
    if let Some(user) = &d.salesforce_user {
        let state = if user.is_active { "active" } else { "inactive" };
        let _ = writeln!(
            out,
            "Salesforce user  {} <{}>  {}  {}  {state}",
            clean(&user.name),
            clean(&user.email),
            clean(&user.username),
            user.id
        );
    }
    if let Some(t) = &d.target {
        let _ = writeln!(
            out,
            "Editing          {} <{}>  AE user {} in {}",
            clean(&t.name),
            clean(&t.email),
            t.ae_user_id,
            clean(&t.business_unit_name)
        );
    }
    let _ = writeln!(
        out,
        "{}",
        paint(
            colour,
            dim,
            &format!(
                "Data as of       {}",
                d.data_as_of.format("%Y-%m-%d %H:%M:%S UTC")
            )
        )
    );
    for (i, f) in d.findings.iter().enumerate() {
        let (label, style) = match f.severity {
            Severity::Blocker => ("BLOCKER", red),
            Severity::Warning => ("WARNING", yellow),
            Severity::Info => ("INFO", Style::new().bold()),
        };
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{}. {}  {}  [{}]",
            i + 1,
            paint(colour, style, label),
            paint(colour, bold, &clean(&f.title)),
            f.code.as_str()
        );
        let _ = writeln!(out, "   {}", clean(&f.detail));
        if !f.steps.is_empty() {
            let _ = writeln!(out, "   Fix:");
            for (n, step) in f.steps.iter().enumerate() {
                let _ = writeln!(out, "     {}. {}", n + 1, clean(step));
            }
        }
        for link in &f.links {
            let _ = writeln!(out, "   {}: {}", link.label, clean(&link.url));
        }
    }
    if !d.candidates.is_empty() {
        let heading = match d.verdict {
            Verdict::Ambiguous => format!("{} users match; name one of them:", d.candidates_total),
            _ => "Close matches:".to_owned(),
        };
        let _ = writeln!(out);
        let _ = writeln!(out, "{heading}");
        for c in &d.candidates {
            let _ = writeln!(
                out,
                "  {}  {}  {}",
                clean(&c.username),
                clean(&c.name),
                c.id
            );
        }
        if d.candidates_total > d.candidates.len() {
            let _ = writeln!(
                out,
                "  …and {} more",
                d.candidates_total - d.candidates.len()
            );
        }
    }
    out
}
