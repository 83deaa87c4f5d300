//! `crm-username generate-org`: a synthetic org snapshot (JSON) of any size (demo builds only).

use std::io::Write;
use std::process::ExitCode;

use super::{CliError, CliResult};
use crate::domain::OrgSnapshot;

#[derive(Debug, clap::Args)]
pub struct GenerateOrgArgs {
    #[arg(long, default_value_t = 1_000)]
    pub sf_users: usize,
    #[arg(long, default_value_t = 200)]
    pub ae_users: usize,
    #[arg(long, default_value_t = 2)]
    pub business_units: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of Salesforce users (0 to 100) that are external (community, portal, guest,
    /// Chatter): Account Engagement cannot map them, and the refresh does not cache them.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub external_percent: u8,
    /// Business units managed in Salesforce assign a Sales users section too, besides the
    /// Marketing users section.
    #[arg(long)]
    pub sales_section: bool,
    /// `GroupMember` rows in all, in the groups of a large org: the business units managed in
    /// Salesforce assign groups nested five levels deep holding about 2% of the rows, and the
    /// rest sit in queues and unassigned groups. 0 keeps the basic org's groups.
    #[arg(long, default_value_t = 0)]
    pub group_members: usize,
}

impl GenerateOrgArgs {
    /// The org these arguments describe.
    pub fn synthetic_org(&self) -> OrgSnapshot {
        crate::synthetic::generate_with(
            crate::synthetic::Params {
                sf_users: self.sf_users,
                ae_users: self.ae_users,
                business_units: self.business_units,
                seed: self.seed,
            },
            crate::synthetic::Variety {
                external_percent: self.external_percent,
                sales_section: self.sales_section,
                group_members: self.group_members,
            },
        )
    }
}

pub fn run(args: &GenerateOrgArgs) -> CliResult {
    let snapshot = args.synthetic_org();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer(&mut stdout, &snapshot)
        .map_err(std::io::Error::from)
        .and_then(|()| stdout.flush())
        .map_err(|err| CliError::usage(format!("cannot write the org: {err}")))?;
    Ok(ExitCode::SUCCESS)
}
