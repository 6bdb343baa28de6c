//! The steps of a GearsBuilder as gears-core [`Step`]s.

use crate::callbacks::{PyStep, Shape, ToPython, ToStr};
use crate::errors::{unknown_step, GearsError, LIMIT_WITHOUT_BOUNDS};
use gears_core::plan::{Callable, Step, StepKind, ValueOfKeyed};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyList;
use std::sync::Arc;

/// One step as the prelude describes it: `(kind, callback name, function,
/// (offset, length) for limit)`.
type StepTuple = (String, String, Option<Py<PyAny>>, Option<(usize, usize)>);

pub(crate) fn make_steps(steps: &Bound<'_, PyList>) -> PyResult<Vec<Step>> {
    let mut out = Vec::with_capacity(steps.len());
    for item in steps.iter() {
        let (kind, name, func, extra): StepTuple = item.extract()?;
        let step_kind = match kind.as_str() {
            "map" => StepKind::Map,
            "filter" => StepKind::Filter,
            "foreach" => StepKind::Foreach,
            "flatmap" => StepKind::FlatMap,
            "extractkey" => StepKind::ExtractKey,
            "repartition" => StepKind::Repartition,
            "group" => StepKind::Group,
            "reduce" => StepKind::Reduce,
            "collect" => StepKind::Collect,
            "accumulate" => StepKind::Accumulate,
            "accumulatebykey" => StepKind::AccumulateByKey,
            "limit" => {
                let (offset, len) =
                    extra.ok_or_else(|| GearsError::new_err(LIMIT_WITHOUT_BOUNDS))?;
                StepKind::Limit { offset, len }
            }
            other => return Err(GearsError::new_err(unknown_step(other))),
        };
        let callback: Option<Arc<dyn Callable>> = match (name.as_str(), func) {
            ("RedisGearsPy_ToPyRecordMapper", _) => Some(Arc::new(ToPython)),
            ("GetValueMapper", _) => Some(Arc::new(ValueOfKeyed)),
            // convertToStr's `map(lambda x: str(x))`, as the prelude marks it.
            ("RedisGearsPy_PyCallbackMapper", Some(f))
                if step_kind == StepKind::Map
                    && f.bind(item.py())
                        .hasattr(intern!(item.py(), "_gears_to_str"))? =>
            {
                Some(Arc::new(ToStr { func: f }))
            }
            (_, Some(f)) => Some(Arc::new(PyStep {
                func: f,
                shape: if name == "RedisGearsPy_PyCallbackFlatMapper" {
                    Shape::FlatMapper
                } else {
                    Shape::Plain
                },
            })),
            (_, None) => None,
        };
        out.push(Step::new(step_kind, name, callback));
    }
    Ok(out)
}
