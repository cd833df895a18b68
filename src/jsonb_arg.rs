//! jsonb arguments read on the extension's terms: size and nesting are checked on the text form before
//! anything is parsed.
//!
//! pgrx's `JsonB` argument type converts the value through serde_json before the function body runs, so
//! no budget can apply: a 1.6 MB object became about ten times that in maps before `rag.max_metadata_bytes`
//! could refuse it, and a value nested deeper than serde_json's 128 levels failed as an internal error
//! (SQLSTATE XX000). `JsonbArg` is the same SQL type, `jsonb`, taken as the raw datum.

use pgrx::callconv::{Arg, ArgAbi};
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::prelude::*;
use ragbench_core::limits::{check_metadata_budget, json_depth, LimitExceeded, Limits};
use std::ffi::CStr;

/// A `jsonb` argument, not yet parsed.
pub struct JsonbArg(pg_sys::Datum);

impl FromDatum for JsonbArg {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        (!is_null).then_some(JsonbArg(datum))
    }
}

unsafe impl<'fcx> ArgAbi<'fcx> for JsonbArg {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: the argument's SQL type is jsonb (SqlTranslatable below), as from_datum expects.
        unsafe { arg.unbox_arg_using_from_datum() }.unwrap_or_else(|| panic!("argument {index} must not be null"))
    }
}

unsafe impl SqlTranslatable for JsonbArg {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(JsonbArg);
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> = Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
}

impl JsonbArg {
    /// The value, or the budget it exceeds: its text over `rag.max_metadata_bytes`, or nesting deeper than
    /// `rag.max_nesting_depth`. `what` names the argument in the error.
    pub fn parse(&self, what: &'static str, limits: &Limits) -> Result<serde_json::Value, LimitExceeded> {
        // SAFETY: a non-null jsonb datum of this call; jsonb_out returns a palloc'd C string in the current
        // memory context, freed with it.
        let text = unsafe {
            let detoasted = pg_sys::pg_detoast_datum_packed(self.0.cast_mut_ptr());
            let out = pgrx::direct_function_call::<&CStr>(pg_sys::jsonb_out, &[Some(pg_sys::Datum::from(detoasted))]);
            out.map(|c| c.to_string_lossy().into_owned()).unwrap_or_default()
        };
        check_metadata_budget(text.len(), 0, limits).map_err(|e| LimitExceeded { what, ..e })?;
        limits.check_nesting(what, json_depth(&text, limits.max_nesting_depth))?;
        match serde_json::from_str(&text) {
            Ok(v) => Ok(v),
            // jsonb accepts numbers beyond f64 (1e400), which serde_json refuses
            Err(e) => crate::errors::invalid(format!("{what} cannot be read: {e}"), "Use numbers within the range of float8."),
        }
    }
}
