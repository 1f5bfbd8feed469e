//! Scalar functions the report queries use, written in Rust so that no user
//! value is ever spliced into SQL text:
//!
//! - `event_total_<k>(...)`: the total of one event on a hit (each
//!   occurrence counts its value, or 1 without one), or one product's
//!   share of it ([`EventTotal`]); the event name is a field of the
//!   function, not an argument.
//! - `post_evar_<n>(post_evars, eVarN)`: the persisted value of an eVar.
//! - `referrer_host(referrer)`: [`referrer_host`].

pub use bdia_model::traffic::referrer_host;

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Float64Builder, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// `event_total_<k>(...) -> Float64`, with one, two or three arguments:
///
/// - `(events)`: the total in that list;
/// - `(post_events, events)`: the total in `post_events` (the events that
///   count), or in `events` for rows written before it existed (null);
/// - `(product_events, post_events, events)`: one product's share: 0 when
///   the event does not count on the hit, else the product's own values of
///   it when it has some, else the hit's total.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct EventTotal {
    fn_name: String,
    event: String,
    signature: Signature,
}

impl EventTotal {
    /// The function `name` totalling `event`.
    pub(crate) fn udf(name: String, event: String) -> ScalarUDF {
        ScalarUDF::new_from_impl(EventTotal {
            fn_name: name,
            event,
            signature: Signature::variadic_any(Volatility::Immutable),
        })
    }
}

/// A column of event lists, read.
struct EventLists<'a> {
    list: &'a datafusion::arrow::array::ListArray,
    names: ArrayRef,
    vals: ArrayRef,
}

impl<'a> EventLists<'a> {
    fn new(fn_name: &str, array: &'a ArrayRef) -> Result<EventLists<'a>> {
        let Some(list) = array.as_list_opt::<i32>() else {
            return exec_err!("{fn_name} expects an events list");
        };
        let Some(items) = list.values().as_struct_opt() else {
            return exec_err!("{fn_name} expects a list of structs");
        };
        let (Some(names), Some(vals)) =
            (items.column_by_name("name"), items.column_by_name("value"))
        else {
            return exec_err!("{fn_name} expects name and value fields");
        };
        Ok(EventLists {
            list,
            names: cast(names, &DataType::Utf8)?,
            vals: cast(vals, &DataType::Float64)?,
        })
    }

    fn is_valid(&self, row: usize) -> bool {
        self.list.is_valid(row)
    }

    /// The total of `event` in row `row` (each occurrence its value, or 1),
    /// `None` when it does not occur.
    fn total(&self, row: usize, event: &str) -> Option<f64> {
        if !self.list.is_valid(row) {
            return None;
        }
        let names = self.names.as_string::<i32>();
        let vals: &Float64Array = self.vals.as_primitive();
        let offsets = self.list.value_offsets();
        let mut total = None;
        for j in offsets[row] as usize..offsets[row + 1] as usize {
            if names.is_valid(j) && names.value(j) == event {
                *total.get_or_insert(0.0) += if vals.is_valid(j) { vals.value(j) } else { 1.0 };
            }
        }
        total
    }
}

impl ScalarUDFImpl for EventTotal {
    fn name(&self) -> &str {
        &self.fn_name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(n))
            .collect::<Result<Vec<_>>>()?;
        let lists = arrays
            .iter()
            .map(|a| EventLists::new(&self.fn_name, a))
            .collect::<Result<Vec<_>>>()?;
        let hit_total = |hit: &[EventLists<'_>], i: usize| match hit {
            [only] => only.total(i, &self.event),
            [post, sent] => {
                if post.is_valid(i) {
                    post.total(i, &self.event)
                } else {
                    sent.total(i, &self.event)
                }
            }
            _ => None,
        };
        let mut out = Float64Builder::with_capacity(n);
        match lists.as_slice() {
            [_] | [_, _] => {
                for i in 0..n {
                    out.append_value(hit_total(&lists, i).unwrap_or(0.0));
                }
            }
            [product, hit @ ..] if hit.len() == 2 => {
                for i in 0..n {
                    let v = hit_total(hit, i)
                        .map(|t| product.total(i, &self.event).unwrap_or(t))
                        .unwrap_or(0.0);
                    out.append_value(v);
                }
            }
            _ => return exec_err!("{} takes one to three arguments", self.fn_name),
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

/// `post_evar_<n>(post_evars, eVarN) -> Utf8`: the persisted value of eVar
/// `n` (the `eVar<n>` key of the `post_evars` map), or, for rows written
/// before persisted values were kept (null map), the value sent.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct PostEvar {
    fn_name: String,
    key: String,
    signature: Signature,
}

impl PostEvar {
    /// The function of eVar `n`.
    pub(crate) fn udf(n: u16) -> ScalarUDF {
        ScalarUDF::new_from_impl(PostEvar {
            fn_name: post_evar_fn(n),
            key: format!("eVar{n}"),
            signature: Signature::any(2, Volatility::Immutable),
        })
    }
}

/// The name of the function of eVar `n`.
pub(crate) fn post_evar_fn(n: u16) -> String {
    format!("post_evar_{n}")
}

impl ScalarUDFImpl for PostEvar {
    fn name(&self) -> &str {
        &self.fn_name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [map, sent] = args.args.as_slice() else {
            return exec_err!("{} takes two arguments", self.fn_name);
        };
        let n = args.number_rows;
        let map = map.to_array(n)?;
        let sent = cast(&sent.to_array(n)?, &DataType::Utf8)?;
        let sent = sent.as_string::<i32>();
        let mut out = StringBuilder::with_capacity(n, 0);
        let Some(map) = map.as_map_opt() else {
            // A lake without the column at all: the value sent.
            for i in 0..n {
                out.append_option(sent.is_valid(i).then(|| sent.value(i)));
            }
            return Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef));
        };
        let keys = cast(map.keys(), &DataType::Utf8)?;
        let keys = keys.as_string::<i32>();
        let values = cast(map.values(), &DataType::Utf8)?;
        let values = values.as_string::<i32>();
        let offsets = map.value_offsets();
        for i in 0..n {
            if !map.is_valid(i) {
                out.append_option(sent.is_valid(i).then(|| sent.value(i)));
                continue;
            }
            let found = (offsets[i] as usize..offsets[i + 1] as usize)
                .find(|&j| keys.is_valid(j) && keys.value(j) == self.key && values.is_valid(j));
            out.append_option(found.map(|j| values.value(j)));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

/// `referrer_host(referrer) -> Utf8`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct ReferrerHost {
    signature: Signature,
}

impl ReferrerHost {
    /// The function.
    pub(crate) fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(ReferrerHost {
            signature: Signature::any(1, Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for ReferrerHost {
    fn name(&self) -> &str {
        "referrer_host"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return exec_err!("referrer_host takes one argument");
        };
        let array = cast(&arg.to_array(args.number_rows)?, &DataType::Utf8)?;
        let strings = array.as_string::<i32>();
        let mut out = StringBuilder::with_capacity(strings.len(), 0);
        for i in 0..strings.len() {
            match strings
                .is_valid(i)
                .then(|| referrer_host(strings.value(i)))
                .flatten()
            {
                Some(h) => out.append_value(h),
                None => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}
