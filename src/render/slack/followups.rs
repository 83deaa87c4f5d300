//! The follow-up re-checks' messages: the "Re-check in 15 min" button on an answer whose fix
//! takes effect later, the confirmation with its "Stop" button, each re-check's answer, and
//! the limits.

use serde_json::{Value, json};

use super::blocks::{button, mrkdwn_section, v};
use super::kit::{Button, Message};
use crate::domain::{Diagnosis, FindingCode, Verdict};

/// The button on an answer: re-check it later, in the same place. Its value is the query.
pub const FOLLOW_UP: &str = "follow_up";
/// The button on a follow-up's messages: no more re-checks. Its value is the follow-up's id.
pub const STOP_FOLLOW_UP: &str = "stop_follow_up";

/// Findings whose fix takes effect later: an AE user created minutes after an assignment, a
/// mapping or a recycle-bin change applied by the next sync.
const WAITING: [FindingCode; 4] = [
    FindingCode::AssignmentPendingSync,
    FindingCode::NotAssignedToBusinessUnit,
    FindingCode::ProfileNotMappedToRole,
    FindingCode::MappedToDeletedUser,
];

/// An answer worth re-checking later: one of its findings is fixed by waiting, or it is a
/// `no_blocker_found` answer (clear: the next sync should show the user). A blocked answer
/// whose other business units have `no_blocker_found` gets no button for that: its blocker
/// needs a person's fix first.
pub fn worth_following_up(d: &Diagnosis) -> bool {
    d.findings.iter().any(|f| WAITING.contains(&f.code))
        || (d.verdict == Verdict::Clear
            && d.findings
                .iter()
                .any(|f| f.code == FindingCode::NoBlockerFound))
}

/// Settled: a re-check that finds this stops the follow-up. Clear, and nothing still pending.
pub fn follow_up_settled(d: &Diagnosis) -> bool {
    d.verdict == Verdict::Clear
        && !d
            .findings
            .iter()
            .any(|f| f.code == FindingCode::AssignmentPendingSync)
}

fn footer_elements(message: &mut Value) -> Option<&mut Vec<Value>> {
    message["blocks"]
        .as_array_mut()?
        .iter_mut()
        .find(|b| b["block_id"] == "footer")?["elements"]
        .as_array_mut()
}

/// Adds "Re-check in N min" to the answer's footer when it is worth it.
pub fn with_follow_up_button(mut message: Value, d: &Diagnosis, minutes: u64) -> Value {
    if worth_following_up(d) {
        let label = format!("Re-check in {minutes} min");
        if let Some(elements) = footer_elements(&mut message) {
            elements.push(button(FOLLOW_UP, &label, Some(&d.query), None));
        }
    }
    message
}

/// [`with_follow_up_button`] on a typed message: the answer to a check.
pub fn add_follow_up_button(message: &mut Message, d: &Diagnosis, minutes: u64) {
    if worth_following_up(d) {
        let label = format!("Re-check in {minutes} min");
        if let Some(elements) = message.footer_elements() {
            elements.push(Button::new(FOLLOW_UP, &label, Some(&d.query), None));
        }
    }
}

fn context(text: String) -> Value {
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": text}]})
}

fn mention(user: &str) -> String {
    if !user.is_empty() && user.chars().all(|c| c.is_ascii_alphanumeric()) {
        format!("<@{user}>")
    } else {
        "someone".to_owned()
    }
}

fn stop_button(id: &str) -> Value {
    let mut stop = button(STOP_FOLLOW_UP, "Stop", Some(id), None);
    stop["style"] = json!("danger");
    stop
}

/// Said where the answer is when a follow-up was scheduled.
pub fn follow_up_scheduled(query: &str, user: &str, id: &str, minutes: u64, tries: u32) -> Value {
    let text = format!(
        ":alarm_clock: {} asked for a follow-up: I will re-check {} in {minutes} minutes and post the new verdict here, every {minutes} minutes until it is clear, {tries} times at most.",
        mention(user),
        v(query)
    );
    json!({
        "text": format!("Follow-up re-checks of {query} scheduled"),
        "blocks": [
            mrkdwn_section(Some("follow_up".into()), text),
            {"type": "actions", "block_id": "follow_up_stop", "elements": [stop_button(id)]},
        ],
    })
}

/// A limit was reached: said to the clicker only.
pub fn follow_up_limit(per_user: bool, limit: usize) -> Value {
    let text = if per_user {
        format!(
            ":no_entry_sign: You already have {limit} follow-ups pending, the most one person can have. Stop one (its *Stop* button) or wait until one finishes, then ask again; *Re-check now* works meanwhile."
        )
    } else {
        format!(
            ":no_entry_sign: This workspace already has {limit} follow-ups pending, the most it can have. Wait until some finish, then ask again; *Re-check now* works meanwhile."
        )
    };
    json!({"text": "Follow-up limit reached", "blocks": [mrkdwn_section(None, text)]})
}

/// The follow-up was stopped (or had already finished).
pub fn follow_up_stopped(query: &str, user: &str, found: bool) -> Value {
    let text = if found {
        format!(
            ":octagonal_sign: {} stopped the follow-up re-checks of {}.",
            mention(user),
            v(query)
        )
    } else {
        ":information_source: That follow-up has already finished or was stopped.".to_owned()
    };
    json!({"text": text, "blocks": [mrkdwn_section(None, text.clone())]})
}

/// Where a follow-up stands after a re-check.
pub enum FollowUpStep<'a> {
    /// Not settled yet: another re-check comes in `minutes`.
    Again { id: &'a str, minutes: u64 },
    /// The verdict is clear: no more re-checks.
    Settled,
    /// The last try, still not clear: what to look at next.
    GaveUp { diagnosis: Option<&'a Diagnosis> },
}

/// A re-check's answer (`answer`, already rendered), headed by which try it is and ended by
/// what comes next.
pub fn follow_up_answer(
    mut answer: Value,
    query: &str,
    user: &str,
    try_number: u32,
    tries: u32,
    step: FollowUpStep<'_>,
) -> Value {
    let head = context(format!(
        ":alarm_clock: Follow-up re-check {try_number} of {tries} of {}, asked by {}",
        v(query),
        mention(user)
    ));
    let tail = match &step {
        FollowUpStep::Again { minutes, .. } => {
            format!(
                ":hourglass_flowing_sand: Not clear yet: I will re-check again in {minutes} minutes."
            )
        }
        FollowUpStep::Settled => {
            ":white_check_mark: The verdict is clear: no more follow-ups.".to_owned()
        }
        FollowUpStep::GaveUp { diagnosis } => format!(
            ":mag: Still not clear after {tries} re-checks; I stop here. What to look at next: {}",
            next_steps(*diagnosis)
        ),
    };
    if let Some(blocks) = answer["blocks"].as_array_mut() {
        // Room for the two blocks added (Slack takes 50).
        while blocks.len() > super::MAX_BLOCKS - 2 {
            blocks.remove(blocks.len().saturating_sub(2));
        }
        blocks.insert(0, head);
        for block in blocks.iter_mut() {
            if let Some(elements) = block["elements"].as_array_mut() {
                elements.retain(|e| e["action_id"] != FOLLOW_UP);
            }
        }
        blocks.push(mrkdwn_section(Some("follow_up".into()), tail));
        if let FollowUpStep::Again { id, .. } = step {
            blocks.push(json!({"type": "actions", "block_id": "follow_up_stop", "elements": [stop_button(id)]}));
        }
    }
    answer
}

/// After the last try: where the fix usually stalls, per finding still there.
fn next_steps(d: Option<&Diagnosis>) -> String {
    let mut steps: Vec<&str> = Vec::new();
    for f in d.map(|d| d.findings.as_slice()).unwrap_or_default() {
        let step = match f.code {
            FindingCode::AssignmentPendingSync => {
                "Account Engagement can take up to an hour after an assignment; past that, look at the connector's sync errors in Account Engagement (Settings > Connectors > Salesforce) for this user."
            }
            FindingCode::NotAssignedToBusinessUnit => {
                "check that the user's assignment in Marketing Setup (Business Unit Setup > Assign Users) was saved, in the right section, and that a group or role holding it includes the user."
            }
            FindingCode::ProfileNotMappedToRole => {
                "check the business unit's User Sync profile-to-role mapping for this profile, then that a sync ran (the connector's sync errors)."
            }
            FindingCode::MappedToDeletedUser => {
                "check that the AE user was restored from the recycle bin (or purged) in the right business unit, then the connector's sync errors."
            }
            _ => continue,
        };
        if !steps.contains(&step) {
            steps.push(step);
        }
    }
    if steps.is_empty() {
        "the connector's sync errors in Account Engagement for this user, and whether the user was changed since; an admin can run `/crm-username refresh` for fresh data.".to_owned()
    } else {
        steps.join(" Then ")
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::{Org, Query};

    fn diagnosis(query: &str) -> Diagnosis {
        let now = Utc::now();
        let org = Org::new(crate::demo::snapshot(now).unwrap());
        crate::diagnose::diagnose(&Query::parse(query).unwrap(), &org, now).unwrap()
    }

    fn action_ids(message: &Value) -> Vec<String> {
        message["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["elements"].as_array())
            .flatten()
            .filter_map(|e| e["action_id"].as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn waiting_fixes_and_clear_answers_get_the_button_a_blocker_needing_a_person_does_not() {
        for (query, expected) in [
            ("eve.new@acme.com", true),
            ("chris.contractor@acme.com", true),
            ("ok.user@acme.com", true),
            ("sam.sales@acme.com", false),
        ] {
            let d = diagnosis(query);
            assert_eq!(worth_following_up(&d), expected, "{query}");
            let message = with_follow_up_button(crate::render::blocks(&d), &d, 15);
            assert_eq!(
                action_ids(&message).contains(&FOLLOW_UP.to_owned()),
                expected,
                "{query}"
            );
        }
        assert!(follow_up_settled(&diagnosis("ok.user@acme.com")));
        assert!(!follow_up_settled(&diagnosis("eve.new@acme.com")));
    }

    #[test]
    fn a_re_check_answer_drops_the_button_keeps_within_slack_limits_and_ends_with_what_next() {
        let d = diagnosis("chris.contractor@acme.com");
        let answer = with_follow_up_button(crate::render::blocks(&d), &d, 15);
        let again = follow_up_answer(
            answer.clone(),
            &d.query,
            "U0ASKER",
            1,
            4,
            FollowUpStep::Again {
                id: "abc",
                minutes: 15,
            },
        );
        let ids = action_ids(&again);
        assert!(!ids.contains(&FOLLOW_UP.to_owned()));
        assert!(ids.contains(&STOP_FOLLOW_UP.to_owned()));
        assert!(again["blocks"].as_array().unwrap().len() <= super::super::MAX_BLOCKS);
        let last = follow_up_answer(
            answer,
            &d.query,
            "<!channel>",
            4,
            4,
            FollowUpStep::GaveUp {
                diagnosis: Some(&d),
            },
        );
        let text = serde_json::to_string(&last["blocks"]).unwrap();
        assert!(!action_ids(&last).contains(&STOP_FOLLOW_UP.to_owned()));
        assert!(text.contains("profile-to-role mapping"), "{text}");
        assert!(
            !text.contains("<!channel>"),
            "a user id that is not one is not mentioned"
        );
    }
}
