//! What `status` and `account test` say about an account's delivery target (`[account.deliver]`).

use crate::config::DeliverTarget;
use crate::store::journal::JournalSummary;

/// `status`: where the account delivers, and what its journal holds.
pub fn print_status(target: &DeliverTarget, journal: Option<&JournalSummary>) {
    let j = journal.cloned().unwrap_or_default();
    let mut line = format!("    delivers to {}: {} delivered", target.describe(), j.delivered);
    if j.delivering > 0 {
        line.push_str(&format!(", {} unconfirmed (checked or delivered again at the next fetch)", j.delivering));
    }
    if j.repeated > 0 {
        line.push_str(&format!(", {} delivery attempt(s) repeated after an unconfirmed one", j.repeated));
    }
    println!("{line}");
    if let Some(c) = &j.last_confirmation {
        println!("    last confirmation: {c}");
    }
}

/// `status --json`: the account's `deliver` object.
pub fn json(target: &DeliverTarget, journal: Option<&JournalSummary>) -> serde_json::Value {
    let j = journal.cloned().unwrap_or_default();
    serde_json::json!({
        "target": target.describe(),
        "delivered": j.delivered,
        "unconfirmed": j.delivering,
        "repeated": j.repeated,
        "last_confirmation": j.last_confirmation,
    })
}

/// `account test`: the target's check, printed; its failure is the command's error.
pub async fn test(
    secrets: &crate::fetch::session::Secrets<'_>,
    account: &crate::config::Account,
    target: &DeliverTarget,
) -> crate::Result<()> {
    println!("  delivery target: {}", target.describe());
    let said = crate::fetch::target::probe(secrets, account, target).await?;
    println!("  delivery target OK: {said}");
    Ok(())
}
