//! Script bindings of the I/O modules besides SQL: `rest_client` (`rest_get`, `rest_post`,
//! `rest_put`, `rest_append_hf`), `exec`, and `cfgutils` (`sleep`, `usleep`). Each async
//! function turns its arguments into a `'static` future on the shard's ring (a
//! per-shard [`RestClient`], a child process, a timer) plus a deadline for the async engine
//! (`proxy::asyncop`).
//!
//! Start-up ([`ModuleShared::from_script`]) reads and checks every parameter and does the
//! blocking reads (CA files, /etc/resolv.conf, /etc/hosts) before any shard runs.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::proxy::asyncop::OpFuture;
use crate::proxy::host::Host;
use crate::script::{
    interp::{Arg, MsgState, ValRef},
    ir::ModParamValue,
    pv::{Pv, PvKind},
    Script, Value,
};
use crate::transport::dns::ring::SystemDnsConfig;

use super::exec::{exec, osips_exec_env, ExecCall, ExecParams};
use super::rest_client::{
    self as rc, ring::RestClient, ModparamValue, RestClientParams, TlsClient,
};
use super::{arg_int, arg_str, Outputs};

/// Module state built once at start-up and shared read-only by the shards.
#[derive(Clone)]
pub struct ModuleShared {
    pub rest: RestClientParams,
    pub tls: Option<TlsClient>,
    pub dns: SystemDnsConfig,
    pub exec: ExecParams,
}

/// Parameters OpenSIPS has that tune libcurl and mean nothing here: accepted, ignored.
const REST_IGNORED: &[&str] = &[
    "connect_poll_interval",
    "no_concurrent_connects",
    "enable_expect_100",
    "max_transfer_size",
];

impl ModuleShared {
    /// Reads every `rest_client` and `exec` parameter; `Err` says which one is wrong.
    pub fn from_script(script: &Script) -> Result<ModuleShared, String> {
        let mut rest = RestClientParams::default();
        let mut exec_params = ExecParams::default();
        for p in &script.modparams {
            let v = match &p.value {
                ModParamValue::Int(i) => ModparamValue::Int(*i),
                ModParamValue::Str(s) => ModparamValue::Str(s),
            };
            match p.module_name {
                "rest_client" if REST_IGNORED.contains(&p.name.as_str()) => {
                    tracing::warn!("rest_client.{} has no effect in ringsip", p.name);
                }
                "rest_client" => rest.set(&p.name, v).map_err(|e| e.to_string())?,
                "exec" => exec_params.set(&p.name, v).map_err(|e| e.to_string())?,
                _ => {}
            }
        }
        let uses_rest = script.is_loaded("rest_client");
        let tls = if uses_rest {
            Some(TlsClient::new(&rest.tls_options()).map_err(|e| format!("rest_client: {e}"))?)
        } else {
            None
        };
        let dns = SystemDnsConfig::read().map_err(|e| format!("DNS configuration: {e}"))?;
        Ok(ModuleShared {
            rest,
            tls,
            dns,
            exec: exec_params,
        })
    }
}

thread_local! {
    static REST: RefCell<Option<Rc<RestClient>>> = const { RefCell::new(None) };
}

fn rest_client(h: &Host<'_>) -> Result<Rc<RestClient>, i32> {
    if let Some(c) = REST.with(|c| c.borrow().clone()) {
        return Ok(c);
    }
    let m = &h.core.shared.modules;
    let Some(tls) = m.tls.clone() else {
        tracing::error!("rest_client is not loaded");
        return Err(-10);
    };
    // One resolver (and cache) per shard, shared with t_relay's RFC 3263 resolution.
    let resolver = crate::proxy::nexthop::shard_resolver(&m.dns);
    let c = RestClient::new(m.rest.clone(), tls, resolver, m.rest.pool_limits());
    REST.with(|slot| *slot.borrow_mut() = Some(Rc::clone(&c)));
    Ok(c)
}

fn out_pv<'a>(args: &[Arg<'a>], i: usize) -> Option<&'a Pv> {
    match args.get(i) {
        Some(Arg::Pv(p)) => Some(p),
        _ => None,
    }
}

fn set_str(out: &mut Outputs, pv: Option<&Pv>, bytes: &[u8]) {
    if let Some(pv) = pv {
        out.sets.push((
            pv.clone(),
            Value::Str(String::from_utf8_lossy(bytes).into_owned()),
        ));
    }
}

/// The rest of a REST call: which variables receive the body, type and code.
struct RestOut {
    body: Option<Pv>,
    ctype: Option<Pv>,
    rcode: Option<Pv>,
}

fn rest_future(client: Rc<RestClient>, call: rc::RestCall, outs: RestOut) -> OpFuture {
    Box::pin(async move {
        let o = client.transfer(call).await;
        let mut out = Outputs::default();
        if let Some(b) = &o.body {
            set_str(&mut out, outs.body.as_ref(), b);
        }
        if let (Some(pv), Some(ct)) = (&outs.ctype, &o.content_type) {
            out.sets.push((pv.clone(), Value::Str(ct.clone())));
        }
        if let Some(pv) = outs.rcode {
            out.sets.push((pv, Value::Int(i64::from(o.http_code))));
        }
        (o.rc, out)
    })
}

fn rest_deadline(c: &RestClient) -> Duration {
    c.params().connection_timeout + c.params().curl_timeout + Duration::from_secs(1)
}

/// `rest_get(url, body_pv[, ctype_pv[, rcode_pv]])`.
pub fn rest_get(
    h: &mut Host<'_>,
    args: &[Arg<'_>],
    _st: &mut MsgState,
) -> Result<(OpFuture, Duration), i32> {
    let url = arg_str(args, 0).ok_or(-10)?;
    let hf = std::mem::take(&mut h.rest_headers);
    let call = rc::rest_get(url, hf).map_err(|e| {
        tracing::warn!("rest_get({url}): {e}");
        e.rc()
    })?;
    let client = rest_client(h)?;
    let outs = RestOut {
        body: out_pv(args, 1).cloned(),
        ctype: out_pv(args, 2).cloned(),
        rcode: out_pv(args, 3).cloned(),
    };
    let deadline = rest_deadline(&client);
    Ok((rest_future(client, call, outs), deadline))
}

fn rest_send(h: &mut Host<'_>, args: &[Arg<'_>], put: bool) -> Result<(OpFuture, Duration), i32> {
    let url = arg_str(args, 0).ok_or(-10)?;
    let body = arg_str(args, 1).unwrap_or("");
    let ctype = arg_str(args, 2);
    let hf = std::mem::take(&mut h.rest_headers);
    let call = if put {
        rc::rest_put(url, body.as_bytes(), ctype, hf)
    } else {
        rc::rest_post(url, body.as_bytes(), ctype, hf)
    }
    .map_err(|e| {
        tracing::warn!("rest call to {url}: {e}");
        e.rc()
    })?;
    let client = rest_client(h)?;
    let outs = RestOut {
        body: out_pv(args, 3).cloned(),
        ctype: out_pv(args, 4).cloned(),
        rcode: out_pv(args, 5).cloned(),
    };
    let deadline = rest_deadline(&client);
    Ok((rest_future(client, call, outs), deadline))
}

/// `rest_post(url, send_body[, send_ctype], body_pv[, ctype_pv[, rcode_pv]])`.
pub fn rest_post(
    h: &mut Host<'_>,
    args: &[Arg<'_>],
    _st: &mut MsgState,
) -> Result<(OpFuture, Duration), i32> {
    rest_send(h, args, false)
}

/// `rest_put(url, send_body[, send_ctype], body_pv[, ctype_pv[, rcode_pv]])`.
pub fn rest_put(
    h: &mut Host<'_>,
    args: &[Arg<'_>],
    _st: &mut MsgState,
) -> Result<(OpFuture, Duration), i32> {
    rest_send(h, args, true)
}

/// `rest_append_hf(header)`: a header for the next REST call of this route.
pub fn rest_append_hf(h: &mut Host<'_>, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    let Some(txt) = arg_str(args, 0) else {
        return -1;
    };
    match rc::rest_append_hf(&mut h.rest_headers, txt) {
        Ok(()) => 1,
        Err(e) => {
            tracing::warn!("rest_append_hf: {e}");
            -1
        }
    }
}

/// `exec(command[, input[, out_pv[, err_pv[, env_pv]]]])`.
pub fn exec_fn(
    h: &mut Host<'_>,
    args: &[Arg<'_>],
    st: &mut MsgState,
) -> Result<(OpFuture, Duration), i32> {
    let command = arg_str(args, 0).ok_or(-1)?;
    // env_avp: every value of the AVP (newest first, as `$(avp(x)[n])` counts) becomes
    // OSIPS_EXEC_0, OSIPS_EXEC_1, ... in the child's environment.
    let env = match args.get(4) {
        Some(Arg::Pv(p)) => match p.kind {
            PvKind::Avp(id) => {
                let values: Vec<String> = st
                    .avp_values(id)
                    .map(|v| match v {
                        ValRef::Str(s) => s.to_string(),
                        ValRef::Int(i) => i.to_string(),
                        ValRef::Null => String::new(),
                    })
                    .collect();
                osips_exec_env(&values)
            }
            _ => {
                tracing::error!("exec(): the env argument must be an $avp");
                return Err(-1);
            }
        },
        _ => Vec::new(),
    };
    let input = arg_str(args, 1).map(str::as_bytes);
    let call = ExecCall::new(command, input, env);
    let params = h.core.shared.modules.exec.clone();
    let deadline = params.time_to_kill + params.kill_grace + Duration::from_secs(1);
    let (out_pv, err_pv) = (out_pv(args, 2).cloned(), out_pv(args, 3).cloned());
    let fut = exec(call, &params);
    Ok((
        Box::pin(async move {
            let o = fut.await;
            let mut out = Outputs::default();
            // OpenSIPS leaves the variable untouched when the stream was empty.
            if let Some(b) = o.stdout.as_deref().filter(|b| !b.is_empty()) {
                set_str(&mut out, out_pv.as_ref(), b);
            }
            if let Some(b) = o.stderr.as_deref().filter(|b| !b.is_empty()) {
                set_str(&mut out, err_pv.as_ref(), b);
            }
            (o.rc, out)
        }),
        deadline,
    ))
}

/// `sleep(seconds)` under `async()`: a timer on the shard's wheel.
pub fn sleep(
    _h: &mut Host<'_>,
    args: &[Arg<'_>],
    _st: &mut MsgState,
) -> Result<(OpFuture, Duration), i32> {
    let s = arg_int(args, 0).ok_or(-1)?;
    let d = super::cfgutils::sleep_delay(s).map_err(|_| -1)?;
    let fut = super::cfgutils::sleep(s);
    Ok((
        Box::pin(async move { (fut.await, Outputs::default()) }),
        d + Duration::from_secs(1),
    ))
}

/// `usleep(microseconds)` under `async()`.
pub fn usleep(
    _h: &mut Host<'_>,
    args: &[Arg<'_>],
    _st: &mut MsgState,
) -> Result<(OpFuture, Duration), i32> {
    let us = arg_int(args, 0).ok_or(-1)?;
    let d = super::cfgutils::usleep_delay(us).map_err(|_| -1)?;
    let fut = super::cfgutils::usleep(us);
    Ok((
        Box::pin(async move { (fut.await, Outputs::default()) }),
        d + Duration::from_secs(1),
    ))
}
