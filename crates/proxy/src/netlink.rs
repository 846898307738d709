//! nf_tables transactions over netlink, for partial syncs.
//!
//! The `nft` binary lists every table, chain and set of the ruleset before it applies a
//! single statement (its cache): with 10,000 service chains that is ~30 ms per sync, most
//! of the time of a one-endpoint change. The proxier already knows what the table holds,
//! so a partial sync can be sent as the netlink batch `nft` itself would send, with no
//! listing first: chains, element changes and the verdict-free service rules. Anything
//! else (ClientIP affinity sets and rules, Local-policy external chains, the
//! `loadBalancerSourceRanges` rules with their anonymous interval sets) is left to
//! `nft -f`: [`encode_rule`] returns `None` and the caller falls back.
//!
//! Wire format: `include/uapi/linux/netfilter/nf_tables.h` and `nfnetlink.h` (Linux);
//! a batch is `NFNL_MSG_BATCH_BEGIN`, the messages, `NFNL_MSG_BATCH_END`, committed
//! atomically by `nfnetlink_rcv_batch` (`net/netfilter/nfnetlink.c`). Every message asks
//! for an ACK, so the reply says which one failed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use crate::exec;
use crate::model::Protocol;
use crate::render::MapId;

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;
const NLMSG_ERROR: u16 = 0x2;
const NLMSG_DONE: u16 = 0x3;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_DUMP_INTR: u16 = 0x10;
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_CAP_ACK: libc::c_int = 10;

const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_GETSET: u16 = 10;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;

// enum nft_table_attributes / nft_chain_attributes / nft_rule_attributes / nft_set_attributes
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_USERDATA: u16 = 6;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
// enum nft_set_elem_list_attributes / nft_set_elem_attributes
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_LIST_ELEM: u16 = 1;
// enum nft_data_attributes / nft_verdict_attributes
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
// enum nft_expr_attributes
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
// enum nft_immediate_attributes / nft_ng_attributes / nft_ct_attributes
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_NG_DREG: u16 = 1;
const NFTA_NG_MODULUS: u16 = 2;
const NFTA_NG_TYPE: u16 = 3;
const NFTA_NG_OFFSET: u16 = 4;
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFTA_CT_DIRECTION: u16 = 3;
const NFTA_CT_SREG: u16 = 4;
/// `NFTNL_UDATA_TABLE_COMMENT`: the table comment's type in nft's userdata TLVs.
const UDATA_TABLE_COMMENT: u8 = 0;

const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_CT_MARK: u32 = 3;
const NFT_NG_RANDOM: u32 = 1;

/// Verdict codes (`enum nft_verdicts`, `NF_DROP`/`NF_ACCEPT`).
const NF_DROP: i32 = 0;
const NF_ACCEPT: i32 = 1;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;

/// Largest number of elements in one element message: the nested element list is one
/// netlink attribute, whose length is a u16.
const ELEMENTS_PER_MESSAGE: usize = 400;
/// Batches larger than this go through `nft -f` (a full-size rewrite is what it is for).
pub const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;
/// Bytes of one ACK (`nlmsgerr` with the original header only, `NETLINK_CAP_ACK`), with
/// room for the skb overhead the receive buffer accounting adds.
const ACK_BUDGET: usize = 512;
/// How long to wait for the kernel's answer before calling the transaction failed.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A value in an element or an immediate expression (`nft_data`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    Value(Vec<u8>),
    Verdict { code: i32, chain: Option<String> },
}

/// The expressions the encoder knows (`net/netfilter/nft_*.c`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// `numgen random mod <modulus> offset <offset>` into `dreg`.
    NumgenRandom { dreg: u32, modulus: u32, offset: u32 },
    /// Loads `data` into `dreg` (`NFT_REG_VERDICT` for a verdict).
    Immediate { dreg: u32, data: Data },
    /// `ct mark set` from `sreg`.
    CtMarkSet { sreg: u32 },
}

/// Encodes a rule of the subset the service chains use, or `None` when the rule needs
/// `nft`: `ct mark set <n>`, `ct mark set numgen random mod <n> offset <m>`,
/// `jump|goto <chain>`, `accept`, `drop`.
pub fn encode_rule(rule: &str) -> Option<Vec<Expr>> {
    let words: Vec<&str> = rule.split_whitespace().collect();
    match words.as_slice() {
        ["ct", "mark", "set", "numgen", "random", "mod", n, "offset", off] => {
            let modulus: u32 = n.parse().ok().filter(|m| *m > 0)?;
            let offset: u32 = off.parse().ok()?;
            Some(vec![Expr::NumgenRandom { dreg: NFT_REG_1, modulus, offset }, Expr::CtMarkSet { sreg: NFT_REG_1 }])
        }
        ["ct", "mark", "set", v] => {
            let v: u32 = v.parse().ok()?;
            // `ct mark` is host byte order (nft's `mark` type).
            Some(vec![
                Expr::Immediate { dreg: NFT_REG_1, data: Data::Value(v.to_ne_bytes().to_vec()) },
                Expr::CtMarkSet { sreg: NFT_REG_1 },
            ])
        }
        _ => Some(vec![Expr::Immediate { dreg: NFT_REG_VERDICT, data: encode_verdict(rule)? }]),
    }
}

/// `accept`, `drop`, `jump <chain>`, `goto <chain>`.
pub fn encode_verdict(text: &str) -> Option<Data> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (code, chain) = match words.as_slice() {
        ["accept"] => (NF_ACCEPT, None),
        ["drop"] => (NF_DROP, None),
        ["jump", c] => (NFT_JUMP, Some(c.to_string())),
        ["goto", c] => (NFT_GOTO, Some(c.to_string())),
        _ => return None,
    };
    Some(Data::Verdict { code, chain })
}

/// The fields of a map's or set's key (or a data map's value), in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Ipv4,
    Proto,
    Port,
    Mark,
}

impl Field {
    /// Bytes of the value (a concatenation pads each field to 4).
    fn width(self) -> usize {
        match self {
            Field::Ipv4 | Field::Mark => 4,
            Field::Proto => 1,
            Field::Port => 2,
        }
    }
}

fn key_fields(map: MapId) -> &'static [Field] {
    match map {
        MapId::ClusterIps | MapId::LoadBalancerIps => &[Field::Ipv4],
        MapId::ServiceIps | MapId::NoEndpointServices | MapId::FirewallIps => &[Field::Ipv4, Field::Proto, Field::Port],
        MapId::ServiceNodePorts | MapId::NoEndpointNodePorts => &[Field::Proto, Field::Port],
        MapId::Endpoints => &[Field::Mark],
        MapId::Hairpin => &[Field::Ipv4, Field::Ipv4],
    }
}

/// Encodes `a . b . c` in nft's layout: each field in its byte order, a concatenation's
/// fields each padded to 4 bytes (`NFT_REG32_SIZE`).
fn encode_fields(fields: &[Field], text: &str) -> Option<Vec<u8>> {
    let parts: Vec<&str> = text.split(" . ").map(str::trim).collect();
    if parts.len() != fields.len() {
        return None;
    }
    let mut out = Vec::with_capacity(4 * fields.len());
    for (f, p) in fields.iter().zip(parts) {
        let bytes: Vec<u8> = match f {
            Field::Ipv4 => p.parse::<Ipv4Addr>().ok()?.octets().to_vec(),
            Field::Proto => {
                let proto = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp].into_iter().find(|x| x.as_str() == p)?;
                vec![proto.number()]
            }
            Field::Port => p.parse::<u16>().ok()?.to_be_bytes().to_vec(),
            Field::Mark => p.parse::<u32>().ok()?.to_ne_bytes().to_vec(),
        };
        out.extend_from_slice(&bytes);
        if fields.len() > 1 {
            out.resize(out.len().next_multiple_of(4), 0);
        }
    }
    Some(out)
}

/// Key bytes of an element of `map` written as `key` (as in [`crate::render::element_text`]).
pub fn encode_key(map: MapId, key: &str) -> Option<Vec<u8>> {
    encode_fields(key_fields(map), key)
}

/// Data of an element of `map` written as `value`.
pub fn encode_value(map: MapId, value: &str) -> Option<Data> {
    match map {
        MapId::ClusterIps | MapId::Hairpin | MapId::LoadBalancerIps => None,
        MapId::Endpoints => Some(Data::Value(encode_fields(&[Field::Ipv4, Field::Port], value)?)),
        MapId::ServiceIps
        | MapId::ServiceNodePorts
        | MapId::NoEndpointServices
        | MapId::NoEndpointNodePorts
        | MapId::FirewallIps => encode_verdict(value),
    }
}

/// One nf_tables transaction being built: messages between batch begin and end.
pub struct Batch {
    table: String,
    buf: Vec<u8>,
    /// What each message does, by sequence number - 1 (for error messages).
    what: Vec<String>,
}

impl Batch {
    /// An empty transaction on the `ip` family table `table`.
    pub fn new(table: &str) -> Batch {
        Batch { table: table.to_string(), buf: Vec::new(), what: Vec::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.what.is_empty()
    }

    /// Bytes of the messages so far.
    pub fn len_bytes(&self) -> usize {
        self.buf.len()
    }

    pub fn add_chain(&mut self, chain: &str) {
        self.on_object(NFT_MSG_NEWCHAIN, NLM_F_CREATE, format!("add chain {chain}"), NFTA_CHAIN_NAME, chain);
    }

    pub fn delete_chain(&mut self, chain: &str) {
        self.on_object(NFT_MSG_DELCHAIN, 0, format!("delete chain {chain}"), NFTA_CHAIN_NAME, chain);
    }

    /// `flush chain`: a rule delete with no handle deletes every rule of the chain.
    pub fn flush_chain(&mut self, chain: &str) {
        self.on_object(NFT_MSG_DELRULE, 0, format!("flush chain {chain}"), NFTA_RULE_CHAIN, chain);
    }

    /// A message naming only the table and one object: every table attribute is type 1
    /// (`NFTA_CHAIN_TABLE`, `NFTA_RULE_TABLE`, `NFTA_SET_TABLE`).
    fn on_object(&mut self, ty: u16, flags: u16, what: String, name_attr: u16, name: &str) {
        let mut m = self.message(ty, flags, what);
        m.str(NFTA_CHAIN_TABLE, &self.table);
        m.str(name_attr, name);
        self.finish(m);
    }

    pub fn add_rule(&mut self, chain: &str, exprs: &[Expr], text: &str) {
        let mut m = self.message(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, format!("add rule {chain} {text}"));
        m.str(NFTA_RULE_TABLE, &self.table);
        m.str(NFTA_RULE_CHAIN, chain);
        let list = m.begin(NFTA_RULE_EXPRESSIONS);
        for e in exprs {
            let elem = m.begin(NFTA_LIST_ELEM);
            match e {
                Expr::NumgenRandom { dreg, modulus, offset } => {
                    m.str(NFTA_EXPR_NAME, "numgen");
                    let d = m.begin(NFTA_EXPR_DATA);
                    m.u32(NFTA_NG_DREG, *dreg);
                    m.u32(NFTA_NG_MODULUS, *modulus);
                    m.u32(NFTA_NG_TYPE, NFT_NG_RANDOM);
                    m.u32(NFTA_NG_OFFSET, *offset);
                    m.end(d);
                }
                Expr::Immediate { dreg, data } => {
                    m.str(NFTA_EXPR_NAME, "immediate");
                    let d = m.begin(NFTA_EXPR_DATA);
                    m.u32(NFTA_IMMEDIATE_DREG, *dreg);
                    m.data(NFTA_IMMEDIATE_DATA, data);
                    m.end(d);
                }
                Expr::CtMarkSet { sreg } => {
                    m.str(NFTA_EXPR_NAME, "ct");
                    let d = m.begin(NFTA_EXPR_DATA);
                    m.u32(NFTA_CT_KEY, NFT_CT_MARK);
                    m.u32(NFTA_CT_SREG, *sreg);
                    m.end(d);
                }
            }
            m.end(elem);
        }
        m.end(list);
        self.finish(m);
    }

    pub fn delete_set(&mut self, set: &str) {
        self.on_object(NFT_MSG_DELSET, 0, format!("delete set {set}"), NFTA_SET_NAME, set);
    }

    /// Adds (`data` given for maps) or deletes elements of `set`, in messages of at most
    /// `ELEMENTS_PER_MESSAGE`.
    pub fn elements(&mut self, add: bool, set: &str, elems: &[(Vec<u8>, Option<Data>)]) {
        for chunk in elems.chunks(ELEMENTS_PER_MESSAGE) {
            let (ty, flags, verb) =
                if add { (NFT_MSG_NEWSETELEM, NLM_F_CREATE, "add") } else { (NFT_MSG_DELSETELEM, 0, "delete") };
            let mut m = self.message(ty, flags, format!("{verb} {} element(s) of {set}", chunk.len()));
            m.str(NFTA_SET_ELEM_LIST_TABLE, &self.table);
            m.str(NFTA_SET_ELEM_LIST_SET, set);
            let list = m.begin(NFTA_SET_ELEM_LIST_ELEMENTS);
            for (key, data) in chunk {
                let elem = m.begin(NFTA_LIST_ELEM);
                let k = m.begin(NFTA_SET_ELEM_KEY);
                m.bytes(NFTA_DATA_VALUE, key);
                m.end(k);
                if let (true, Some(d)) = (add, data) {
                    m.data(NFTA_SET_ELEM_DATA, d);
                }
                m.end(elem);
            }
            m.end(list);
            self.finish(m);
        }
    }

    fn message(&mut self, ty: u16, flags: u16, what: String) -> Msg {
        self.what.push(what);
        let seq = self.what.len() as u32;
        Msg::new((NFNL_SUBSYS_NFTABLES << 8) | ty, NLM_F_REQUEST | NLM_F_ACK | flags, seq, libc::AF_INET as u8, 0)
    }

    fn finish(&mut self, m: Msg) {
        self.buf.extend_from_slice(&m.done());
    }

    /// The whole datagram: begin, messages, end.
    fn datagram(&self) -> Vec<u8> {
        let end_seq = self.what.len() as u32 + 1;
        let begin = Msg::new(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, libc::AF_UNSPEC as u8, NFNL_SUBSYS_NFTABLES);
        let end = Msg::new(NFNL_MSG_BATCH_END, NLM_F_REQUEST, end_seq, libc::AF_UNSPEC as u8, NFNL_SUBSYS_NFTABLES);
        let mut out = begin.done();
        out.extend_from_slice(&self.buf);
        out.extend_from_slice(&end.done());
        out
    }
}

/// One netlink message under construction: `nlmsghdr` + `nfgenmsg` + attributes.
struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Msg {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set in done()
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        buf.push(family);
        buf.push(0); // NFNETLINK_V0
        buf.extend_from_slice(&res_id.to_be_bytes());
        Msg { buf }
    }

    fn attr(&mut self, ty: u16, payload: &[u8]) {
        let len = 4 + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
    }

    fn pad(&mut self) {
        let padded = self.buf.len().next_multiple_of(4);
        self.buf.resize(padded, 0);
    }

    /// A NUL-terminated string (`mnl_attr_put_strz`).
    fn str(&mut self, ty: u16, s: &str) {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.attr(ty, &v);
    }

    /// nf_tables' integers are big-endian on the wire.
    fn u32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }

    fn bytes(&mut self, ty: u16, v: &[u8]) {
        self.attr(ty, v);
    }

    fn data(&mut self, ty: u16, data: &Data) {
        let outer = self.begin(ty);
        match data {
            Data::Value(v) => self.bytes(NFTA_DATA_VALUE, v),
            Data::Verdict { code, chain } => {
                let verdict = self.begin(NFTA_DATA_VERDICT);
                self.attr(NFTA_VERDICT_CODE, &code.to_be_bytes());
                if let Some(c) = chain {
                    self.str(NFTA_VERDICT_CHAIN, c);
                }
                self.end(verdict);
            }
        }
        self.end(outer);
    }

    /// Starts a nested attribute; returns its offset for [`Msg::end`].
    fn begin(&mut self, ty: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn done(mut self) -> Vec<u8> {
        self.pad();
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// Why a netlink transaction failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("nf_tables netlink socket: {0}")]
    Io(#[from] io::Error),
    /// The kernel refused the transaction (nothing was applied).
    #[error("the kernel refused `{what}`: {source}")]
    Refused {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("no answer from the kernel for {missing} of {sent} messages within {REPLY_TIMEOUT:?}")]
    NoAnswer { missing: usize, sent: usize },
    /// The table could not be read back: {0}.
    #[error("cannot read the table back: {0}")]
    Undecodable(String),
}

/// A `NETLINK_NETFILTER` socket, opened in the proxy's network namespace and kept.
pub struct Socket {
    fd: OwnedFd,
}

impl Socket {
    /// Opens the socket in `netns` (the calling thread's namespace when `None`): a socket
    /// belongs to the namespace it was created in.
    pub fn open(netns: Option<&Path>) -> io::Result<Socket> {
        let fd = exec::in_netns(netns, || {
            // SAFETY: plain socket(2); the result is checked before use.
            let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_NETFILTER) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fd is a fresh, owned descriptor.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })?;
        let sock = Socket { fd };
        // Errors carry only the failed message's header, not the whole message.
        sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, &1i32)?;
        let tv = libc::timeval { tv_sec: REPLY_TIMEOUT.as_secs() as libc::time_t, tv_usec: 0 };
        sock.setsockopt(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
        // SAFETY: sockaddr_nl is plain data; zeroed is a valid "kernel assigns the port".
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: addr is a valid sockaddr_nl of the given size.
        let rc = unsafe {
            libc::bind(
                sock.fd.as_raw_fd(),
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sock)
    }

    fn setsockopt<T>(&self, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
        // SAFETY: value points to a live T of the given size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                value as *const T as *const libc::c_void,
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Sends `batch` as one transaction and waits for every ACK. On error nothing was
    /// applied (the kernel aborts the whole batch).
    pub fn commit(&mut self, batch: &Batch) -> Result<(), NetlinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.drain();
        let dgram = batch.datagram();
        // One datagram must fit the send buffer, and every ACK the receive buffer (as nft
        // does: `mnl_set_sndbuffer`/`mnl_set_rcvbuffer`). FORCE needs CAP_NET_ADMIN, which
        // the proxy has; the plain options are capped by net.core.{w,r}mem_max.
        let snd = (dgram.len() * 2).max(256 * 1024) as libc::c_int;
        let rcv = (batch.what.len() * ACK_BUDGET).max(256 * 1024) as libc::c_int;
        if self.setsockopt(libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &snd).is_err() {
            self.setsockopt(libc::SOL_SOCKET, libc::SO_SNDBUF, &snd)?;
        }
        if self.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &rcv).is_err() {
            self.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUF, &rcv)?;
        }
        self.send(&dgram)?;
        let total = batch.what.len();
        let mut answered = vec![false; total];
        let mut remaining = total;
        let mut first_error: Option<(u32, i32)> = None;
        let mut buf = vec![0u8; 64 * 1024];
        while remaining > 0 {
            let Some(n) = self.recv(&mut buf)? else {
                return Err(NetlinkError::NoAnswer { missing: remaining, sent: total });
            };
            for (seq, errno) in parse_acks(&buf[..n]) {
                let Some(slot) = seq.checked_sub(1).and_then(|i| answered.get_mut(i as usize)) else { continue };
                if !*slot {
                    *slot = true;
                    remaining -= 1;
                }
                if errno != 0 && first_error.is_none() {
                    first_error = Some((seq, errno));
                }
            }
            // After an error the kernel aborted the batch; the remaining answers may not come.
            if first_error.is_some() {
                break;
            }
        }
        match first_error {
            None => Ok(()),
            Some((seq, errno)) => Err(NetlinkError::Refused {
                what: batch.what.get(seq as usize - 1).cloned().unwrap_or_default(),
                source: io::Error::from_raw_os_error(errno),
            }),
        }
    }

    /// Sends one datagram.
    fn send(&self, dgram: &[u8]) -> Result<(), NetlinkError> {
        // SAFETY: dgram is a live buffer of the given length.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), dgram.as_ptr() as *const libc::c_void, dgram.len(), 0) };
        if sent < 0 {
            return Err(NetlinkError::Io(io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Receives one datagram into `buf`: its length, or `None` when nothing came within
    /// the socket's receive timeout.
    fn recv(&self, buf: &mut [u8]) -> Result<Option<usize>, NetlinkError> {
        loop {
            // SAFETY: buf is a live, writable buffer of the given length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
            if n >= 0 {
                return Ok(Some(n as usize));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => return Ok(None),
                _ => return Err(NetlinkError::Io(e)),
            }
        }
    }

    /// Drops answers left over from an earlier transaction that ended early.
    fn drain(&self) {
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: buf is a live, writable buffer of the given length.
            let n = unsafe {
                libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), libc::MSG_DONTWAIT)
            };
            if n <= 0 {
                return;
            }
        }
    }
}

/// What the kernel's table holds, read back over netlink (for adopting a table left by an
/// earlier run instead of rewriting it).
#[derive(Debug, Default)]
pub struct KernelTable {
    /// The table comment (nft's userdata), which carries the skeleton fingerprint.
    pub comment: Option<String>,
    pub chains: HashSet<String>,
    /// Each chain's rules in order, decoded; `None` for a rule outside the encoder's subset.
    pub rules: HashMap<String, Vec<Option<Vec<Expr>>>>,
    /// Named sets and maps (anonymous ones excluded).
    pub sets: HashSet<String>,
    /// Elements of the managed maps and sets: key -> value (`None` in a set), as
    /// [`crate::render::element_text`] writes them.
    pub elements: BTreeMap<MapId, HashMap<String, Option<String>>>,
}

impl Socket {
    /// Reads the `ip` table `table`: `Ok(None)` when it does not exist. Fails when the
    /// ruleset changed during the read or an element cannot be decoded.
    pub fn read_table(&mut self, table: &str) -> Result<Option<KernelTable>, NetlinkError> {
        let reply = match self.request(NFT_MSG_GETTABLE, false, |m| m.str(NFTA_TABLE_NAME, table)) {
            Ok(r) => r,
            Err(NetlinkError::Refused { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let mut out = KernelTable::default();
        for (_, payload) in &reply {
            for (ty, v) in attrs(payload) {
                if ty == NFTA_TABLE_USERDATA {
                    out.comment = udata_comment(v);
                }
            }
        }
        for (_, payload) in self.request(NFT_MSG_GETCHAIN, true, |m| m.str(NFTA_CHAIN_TABLE, table))? {
            let a = attr_map(&payload);
            if a.get(&NFTA_CHAIN_TABLE).and_then(|v| attr_str(v)).as_deref() != Some(table) {
                continue;
            }
            if let Some(name) = a.get(&NFTA_CHAIN_NAME).and_then(|v| attr_str(v)) {
                out.chains.insert(name);
            }
        }
        for (_, payload) in self.request(NFT_MSG_GETRULE, true, |m| m.str(NFTA_RULE_TABLE, table))? {
            let a = attr_map(&payload);
            if a.get(&NFTA_RULE_TABLE).and_then(|v| attr_str(v)).as_deref() != Some(table) {
                continue;
            }
            let Some(chain) = a.get(&NFTA_RULE_CHAIN).and_then(|v| attr_str(v)) else { continue };
            let exprs = a.get(&NFTA_RULE_EXPRESSIONS).and_then(|v| decode_exprs(v));
            out.rules.entry(chain).or_default().push(exprs);
        }
        for (_, payload) in self.request(NFT_MSG_GETSET, true, |m| m.str(NFTA_SET_TABLE, table))? {
            let a = attr_map(&payload);
            if a.get(&NFTA_SET_TABLE).and_then(|v| attr_str(v)).as_deref() != Some(table) {
                continue;
            }
            if let Some(name) = a.get(&NFTA_SET_NAME).and_then(|v| attr_str(v)) {
                if !name.starts_with("__") {
                    out.sets.insert(name);
                }
            }
        }
        for map in MapId::ALL {
            if !out.sets.contains(map.name()) {
                continue;
            }
            let elems = out.elements.entry(map).or_default();
            let reply = self.request(NFT_MSG_GETSETELEM, true, |m| {
                m.str(NFTA_SET_ELEM_LIST_TABLE, table);
                m.str(NFTA_SET_ELEM_LIST_SET, map.name());
            })?;
            for (_, payload) in reply {
                let a = attr_map(&payload);
                let Some(list) = a.get(&NFTA_SET_ELEM_LIST_ELEMENTS) else { continue };
                for (_, elem) in attrs(list) {
                    let e = attr_map(elem);
                    let key = e
                        .get(&NFTA_SET_ELEM_KEY)
                        .and_then(|k| attr_map(k).get(&NFTA_DATA_VALUE).map(|v| v.to_vec()))
                        .and_then(|k| decode_key(map, &k));
                    let Some(key) = key else {
                        return Err(NetlinkError::Undecodable(format!("an element key of {}", map.name())));
                    };
                    let value = match e.get(&NFTA_SET_ELEM_DATA) {
                        None if !map.is_map() => None,
                        Some(d) => match decode_data(d).and_then(|d| decode_value(map, &d)) {
                            Some(v) => Some(v),
                            None => {
                                return Err(NetlinkError::Undecodable(format!("the value of {key} in {}", map.name())))
                            }
                        },
                        None => return Err(NetlinkError::Undecodable(format!("{key} in {} has no value", map.name()))),
                    };
                    elems.insert(key, value);
                }
            }
        }
        Ok(Some(out))
    }

    /// Sends one GET request (a dump when `dump`) and returns the answer's messages:
    /// (message type within nf_tables, attributes).
    fn request(
        &mut self,
        ty: u16,
        dump: bool,
        build: impl FnOnce(&mut Msg),
    ) -> Result<Vec<(u16, Vec<u8>)>, NetlinkError> {
        self.drain();
        let seq = 1;
        let flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        let mut m = Msg::new((NFNL_SUBSYS_NFTABLES << 8) | ty, flags, seq, libc::AF_INET as u8, 0);
        build(&mut m);
        let dgram = m.done();
        self.send(&dgram)?;
        let what = format!("get (message type {ty})");
        let mut out = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let Some(n) = self.recv(&mut buf)? else {
                return Err(NetlinkError::NoAnswer { missing: 1, sent: 1 });
            };
            let mut b = &buf[..n];
            while b.len() >= 16 {
                let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let mty = u16::from_ne_bytes([b[4], b[5]]);
                let mflags = u16::from_ne_bytes([b[6], b[7]]);
                if len < 16 || len > b.len() {
                    return Err(NetlinkError::Undecodable("a truncated netlink message".into()));
                }
                if mflags & NLM_F_DUMP_INTR != 0 {
                    return Err(NetlinkError::Undecodable("the ruleset changed during the read".into()));
                }
                match mty {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR if len >= 20 => {
                        let err = i32::from_ne_bytes([b[16], b[17], b[18], b[19]]);
                        if err != 0 {
                            return Err(NetlinkError::Refused { what, source: io::Error::from_raw_os_error(-err) });
                        }
                        // The ACK after a non-dump answer.
                        return Ok(out);
                    }
                    _ if len >= 20 => out.push((mty & 0xff, b[20..len].to_vec())),
                    _ => {}
                }
                b = &b[len.next_multiple_of(4).min(b.len())..];
            }
        }
    }
}

/// The attributes of a message or nested attribute: (type without flags, payload).
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((ty, &b[4..len]));
        b = &b[len.next_multiple_of(4).min(b.len())..];
    }
    out
}

fn attr_map(b: &[u8]) -> HashMap<u16, &[u8]> {
    attrs(b).into_iter().collect()
}

fn attr_str(v: &[u8]) -> Option<String> {
    let v = v.strip_suffix(&[0]).unwrap_or(v);
    String::from_utf8(v.to_vec()).ok()
}

fn attr_u32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

/// The comment in nft's userdata TLVs (type u8, length u8, value).
fn udata_comment(mut b: &[u8]) -> Option<String> {
    while b.len() >= 2 {
        let (ty, len) = (b[0], b[1] as usize);
        let value = b.get(2..2 + len)?;
        if ty == UDATA_TABLE_COMMENT {
            return attr_str(value);
        }
        b = &b[2 + len..];
    }
    None
}

/// `nft_data`: a value or a verdict.
fn decode_data(b: &[u8]) -> Option<Data> {
    let a = attr_map(b);
    if let Some(v) = a.get(&NFTA_DATA_VALUE) {
        return Some(Data::Value(v.to_vec()));
    }
    let v = attr_map(a.get(&NFTA_DATA_VERDICT)?);
    let code = attr_u32(v.get(&NFTA_VERDICT_CODE)?)? as i32;
    let chain = v.get(&NFTA_VERDICT_CHAIN).and_then(|c| attr_str(c));
    Some(Data::Verdict { code, chain })
}

/// A rule's expression list, when every expression is in the encoder's subset.
fn decode_exprs(b: &[u8]) -> Option<Vec<Expr>> {
    let mut out = Vec::new();
    for (_, elem) in attrs(b) {
        let e = attr_map(elem);
        let name = attr_str(e.get(&NFTA_EXPR_NAME)?)?;
        let d = e.get(&NFTA_EXPR_DATA).map(|d| attr_map(d)).unwrap_or_default();
        let u = |k: u16| d.get(&k).and_then(|v| attr_u32(v));
        let expr = match name.as_str() {
            "numgen" if u(NFTA_NG_TYPE) == Some(NFT_NG_RANDOM) => Expr::NumgenRandom {
                dreg: u(NFTA_NG_DREG)?,
                modulus: u(NFTA_NG_MODULUS)?,
                offset: u(NFTA_NG_OFFSET).unwrap_or(0),
            },
            "immediate" => {
                Expr::Immediate { dreg: u(NFTA_IMMEDIATE_DREG)?, data: decode_data(d.get(&NFTA_IMMEDIATE_DATA)?)? }
            }
            "ct" if u(NFTA_CT_KEY) == Some(NFT_CT_MARK)
                && !d.contains_key(&NFTA_CT_DREG)
                && !d.contains_key(&NFTA_CT_DIRECTION) =>
            {
                Expr::CtMarkSet { sreg: u(NFTA_CT_SREG)? }
            }
            _ => return None,
        };
        out.push(expr);
    }
    Some(out)
}

/// The text of a verdict, as the renderer writes it.
fn verdict_text(code: i32, chain: Option<&str>) -> Option<String> {
    Some(match (code, chain) {
        (NF_ACCEPT, None) => "accept".to_string(),
        (NF_DROP, None) => "drop".to_string(),
        (NFT_JUMP, Some(c)) => format!("jump {c}"),
        (NFT_GOTO, Some(c)) => format!("goto {c}"),
        _ => return None,
    })
}

fn decode_fields(fields: &[Field], b: &[u8]) -> Option<String> {
    let mut parts = Vec::with_capacity(fields.len());
    let mut at = 0;
    for f in fields {
        let text = match f {
            Field::Ipv4 => Ipv4Addr::from(<[u8; 4]>::try_from(b.get(at..at + 4)?).ok()?).to_string(),
            Field::Proto => {
                let n = *b.get(at)?;
                let p = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp].into_iter().find(|p| p.number() == n)?;
                p.as_str().to_string()
            }
            Field::Port => u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?).to_string(),
            Field::Mark => u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?).to_string(),
        };
        parts.push(text);
        at += if fields.len() > 1 { 4 } else { f.width() };
    }
    (at == b.len()).then(|| parts.join(" . "))
}

/// The text of an element key of `map`, as [`encode_key`] reads it.
pub fn decode_key(map: MapId, b: &[u8]) -> Option<String> {
    decode_fields(key_fields(map), b)
}

/// The text of an element value of `map`, as [`encode_value`] reads it.
pub fn decode_value(map: MapId, d: &Data) -> Option<String> {
    match (map, d) {
        (MapId::Endpoints, Data::Value(v)) => decode_fields(&[Field::Ipv4, Field::Port], v),
        (
            MapId::ServiceIps
            | MapId::ServiceNodePorts
            | MapId::NoEndpointServices
            | MapId::NoEndpointNodePorts
            | MapId::FirewallIps,
            Data::Verdict { code, chain },
        ) => verdict_text(*code, chain.as_deref()),
        _ => None,
    }
}

/// (sequence number, errno) of each `NLMSG_ERROR` in a datagram (errno 0 is an ACK).
fn parse_acks(mut b: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    while b.len() >= 16 {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let ty = u16::from_ne_bytes([b[4], b[5]]);
        if len < 16 || len > b.len() {
            break;
        }
        if ty == NLMSG_ERROR && len >= 16 + 4 + 16 {
            let err = i32::from_ne_bytes([b[16], b[17], b[18], b[19]]);
            // The header of the message this answers follows the error code.
            let seq = u32::from_ne_bytes([b[28], b[29], b[30], b[31]]);
            out.push((seq, -err));
        }
        b = &b[len.next_multiple_of(4).min(b.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_use_nft_layout() {
        assert_eq!(encode_key(MapId::ClusterIps, "10.96.0.1"), Some(vec![10, 96, 0, 1]));
        assert_eq!(
            encode_key(MapId::ServiceIps, "10.96.0.1 . tcp . 80"),
            Some(vec![10, 96, 0, 1, 6, 0, 0, 0, 0, 80, 0, 0])
        );
        assert_eq!(encode_key(MapId::ServiceNodePorts, "udp . 31111"), Some(vec![17, 0, 0, 0, 0x79, 0x87, 0, 0]));
        assert_eq!(encode_key(MapId::Endpoints, "65536"), Some(65536u32.to_ne_bytes().to_vec()));
        assert_eq!(encode_key(MapId::Hairpin, "10.0.0.1 . 10.0.0.1"), Some(vec![10, 0, 0, 1, 10, 0, 0, 1]));
        assert_eq!(encode_key(MapId::ServiceIps, "10.96.0.1 . tcp"), None);
        assert_eq!(encode_key(MapId::ServiceIps, "10.96.0.1 . icmp . 80"), None);
    }

    #[test]
    fn values_and_verdicts() {
        assert_eq!(
            encode_value(MapId::Endpoints, "10.244.0.5 . 8080"),
            Some(Data::Value(vec![10, 244, 0, 5, 0x1f, 0x90, 0, 0]))
        );
        assert_eq!(
            encode_value(MapId::ServiceIps, "goto service-X"),
            Some(Data::Verdict { code: NFT_GOTO, chain: Some("service-X".into()) })
        );
        assert_eq!(encode_value(MapId::NoEndpointServices, "drop"), Some(Data::Verdict { code: 0, chain: None }));
        assert_eq!(encode_value(MapId::ServiceIps, "reject"), None);
    }

    #[test]
    fn keys_and_values_decode_to_the_renderer_text() {
        for (map, key) in [
            (MapId::ClusterIps, "10.96.0.1"),
            (MapId::ServiceIps, "10.96.0.1 . tcp . 80"),
            (MapId::NoEndpointServices, "192.168.122.50 . sctp . 9999"),
            (MapId::ServiceNodePorts, "udp . 31111"),
            (MapId::Endpoints, "655360001"),
            (MapId::Hairpin, "10.244.0.2 . 10.244.0.2"),
            (MapId::FirewallIps, "192.168.122.200 . tcp . 80"),
        ] {
            let bytes = encode_key(map, key).unwrap_or_default();
            assert_eq!(decode_key(map, &bytes).as_deref(), Some(key), "{map:?}");
        }
        for (map, value) in [
            (MapId::Endpoints, "10.244.0.2 . 8080"),
            (MapId::ServiceIps, "goto service-ABC-default/web/tcp/http"),
            (MapId::NoEndpointServices, "goto reject-chain"),
            (MapId::NoEndpointNodePorts, "drop"),
            (MapId::FirewallIps, "goto firewall-ABC-default/lb/tcp/http"),
        ] {
            let data = encode_value(map, value);
            assert_eq!(data.as_ref().and_then(|d| decode_value(map, d)).as_deref(), Some(value), "{map:?}");
        }
        assert_eq!(decode_key(MapId::ServiceIps, &[10, 96, 0, 1, 6, 0, 0, 0]), None, "too short");
        assert_eq!(decode_key(MapId::ServiceNodePorts, &[1, 0, 0, 0, 0, 80, 0, 0]), None, "icmp is not ours");
    }

    #[test]
    fn rules_outside_the_subset_are_left_to_nft() {
        assert!(encode_rule("ct mark set numgen random mod 3 offset 65536").is_some());
        assert!(encode_rule("ct mark set 65536").is_some());
        assert!(encode_rule("jump mark-for-masquerade").is_some());
        assert!(encode_rule("ip saddr @affinity-X goto endpoint-X").is_none());
        assert!(encode_rule("numgen random mod 2 vmap { 0 : goto a, 1 : goto b }").is_none());
        assert!(encode_rule("ct mark set numgen random mod 0 offset 1").is_none());
        assert!(encode_rule("fib saddr type local goto service-X comment \"x\"").is_none());
        assert!(encode_rule("ip saddr != { 192.168.0.0/16 } drop").is_none(), "firewall rules go through nft");
    }

    #[test]
    fn acks_are_parsed_by_sequence() {
        // Two NLMSG_ERROR messages: an ACK for seq 1 and ENOENT for seq 2.
        let mut d = Vec::new();
        for (seq, err) in [(1u32, 0i32), (2, -libc::ENOENT)] {
            d.extend_from_slice(&36u32.to_ne_bytes());
            d.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            d.extend_from_slice(&0u16.to_ne_bytes());
            d.extend_from_slice(&seq.to_ne_bytes());
            d.extend_from_slice(&0u32.to_ne_bytes());
            d.extend_from_slice(&err.to_ne_bytes());
            d.extend_from_slice(&[0u8; 8]);
            d.extend_from_slice(&seq.to_ne_bytes());
            d.extend_from_slice(&0u32.to_ne_bytes());
        }
        assert_eq!(parse_acks(&d), vec![(1, 0), (2, libc::ENOENT)]);
    }
}
