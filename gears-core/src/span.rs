//! Runs that span the shards of a cluster: a plan is cut at every
//! `collect` and `repartition` into segments; each shard runs a segment,
//! then a host-provided [`Crossing`] moves the records to where the next
//! segment runs (a `repartition` sends each record to the shard owning its
//! key, a `collect` sends every record to the shard that started the run).
//!
//! Nothing here knows shards or a language: the module implements
//! `Crossing` over its messages, the binding runs the segments.

use crate::plan::{Plan, StepKind};
use crate::record::Record;

/// What a run that spans the shards does where records cross shards.
pub trait Crossing: Send {
    /// This shard's records reaching boundary `index` (a step of `kind`);
    /// the records this shard goes on with (`None`: nothing more runs
    /// here), or why the run can not go on. May block (the caller holds no
    /// host lock).
    fn cross(
        &mut self,
        index: usize,
        kind: StepKind,
        records: Vec<Record>,
    ) -> Result<Option<Vec<Record>>, crate::Error>;
}

/// The steps from one boundary to the next, starting with the boundary's
/// own `collect` or `repartition` step.
pub struct Segment {
    /// The boundary step's index in the whole plan.
    pub index: usize,
    pub kind: StepKind,
    pub plan: Plan,
}

/// Whether a step kind cuts a plan that spans the shards.
pub fn is_boundary(kind: StepKind) -> bool {
    matches!(kind, StepKind::Collect | StepKind::Repartition)
}

/// Splits `plan` at every boundary: the steps before the first one, then
/// each boundary with the steps up to the next one.
pub fn segments(plan: &Plan) -> (Plan, Vec<Segment>) {
    let cuts: Vec<usize> = plan
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| is_boundary(s.kind))
        .map(|(i, _)| i)
        .collect();
    let part = |from: usize, to: usize| Plan {
        reader: plan.reader.clone(),
        steps: plan.steps[from..to].to_vec(),
        desc: plan.desc.clone(),
    };
    let first = part(0, cuts.first().copied().unwrap_or(plan.steps.len()));
    let rest = cuts
        .iter()
        .enumerate()
        .map(|(n, &at)| {
            let end = cuts.get(n + 1).copied().unwrap_or(plan.steps.len());
            Segment {
                index: at,
                kind: plan.steps[at].kind,
                plan: part(at, end),
            }
        })
        .collect();
    (first, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Step;

    fn plan(kinds: &[StepKind]) -> Plan {
        Plan {
            reader: "KeysReader".into(),
            steps: kinds
                .iter()
                .map(|k| Step::new(*k, format!("{k:?}"), None))
                .collect(),
            desc: Some("d".into()),
        }
    }

    fn kinds(p: &Plan) -> Vec<StepKind> {
        p.steps.iter().map(|s| s.kind).collect()
    }

    #[test]
    fn a_plan_without_boundaries_is_one_segment() {
        let p = plan(&[StepKind::Map, StepKind::Filter]);
        let (first, rest) = segments(&p);
        assert_eq!(kinds(&first), [StepKind::Map, StepKind::Filter]);
        assert!(rest.is_empty());
    }

    #[test]
    fn each_boundary_starts_a_segment_that_keeps_its_step() {
        use StepKind::*;
        let p = plan(&[Map, Repartition, Group, Reduce, Collect, Map]);
        let (first, rest) = segments(&p);
        assert_eq!(kinds(&first), [Map]);
        let cut: Vec<(usize, StepKind, Vec<StepKind>)> = rest
            .iter()
            .map(|s| (s.index, s.kind, kinds(&s.plan)))
            .collect();
        assert_eq!(
            cut,
            vec![
                (1, Repartition, vec![Repartition, Group, Reduce]),
                (4, Collect, vec![Collect, Map]),
            ]
        );
        // Every segment reads as the plan does and keeps its description.
        assert!(rest
            .iter()
            .all(|s| s.plan.reader == "KeysReader" && s.plan.desc.as_deref() == Some("d")));
    }

    #[test]
    fn a_plan_that_starts_with_a_boundary_has_an_empty_first_segment() {
        let p = plan(&[StepKind::Collect]);
        let (first, rest) = segments(&p);
        assert!(first.steps.is_empty());
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].index, 0);
    }
}
