//! Scalar functions the report queries use, written in Rust so that no user
//! value is ever spliced into SQL text:
//!
//! - `event_total_<k>(events)`: the total of one event in a hit's `events`
//!   list (each occurrence counts its value, or 1 without one); the event
//!   name is a field of the function, not an argument.
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

/// `event_total_<k>(events) -> Float64`.
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
            signature: Signature::any(1, Volatility::Immutable),
        })
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
        let [arg] = args.args.as_slice() else {
            return exec_err!("{} takes one argument", self.fn_name);
        };
        let array = arg.to_array(args.number_rows)?;
        let Some(list) = array.as_list_opt::<i32>() else {
            return exec_err!("{} expects the events list", self.fn_name);
        };
        let values = list.values();
        let Some(items) = values.as_struct_opt() else {
            return exec_err!("{} expects a list of structs", self.fn_name);
        };
        let (Some(names), Some(vals)) =
            (items.column_by_name("name"), items.column_by_name("value"))
        else {
            return exec_err!("{} expects name and value fields", self.fn_name);
        };
        let names = cast(names, &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let vals = cast(vals, &DataType::Float64)?;
        let vals: &Float64Array = vals.as_primitive();
        let offsets = list.value_offsets();
        let mut out = Float64Builder::with_capacity(list.len());
        for i in 0..list.len() {
            let mut total = 0.0;
            if list.is_valid(i) {
                for j in offsets[i] as usize..offsets[i + 1] as usize {
                    if names.is_valid(j) && names.value(j) == self.event {
                        total += if vals.is_valid(j) { vals.value(j) } else { 1.0 };
                    }
                }
            }
            out.append_value(total);
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
