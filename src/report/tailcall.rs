//! Frames that left no trace on the stack: a function that ends in a jump to another
//! (a tail call) is gone from the stack by the time the callee runs. DWARF 5 call-site
//! entries (`DW_TAG_call_site`, and GCC's older `DW_TAG_GNU_call_site`) record every
//! call and which ones are tail calls, so when a caller's call site names a different
//! function than the one its callee frame is in, the chain of tail calls between them
//! can be found, as gdb does, when it is the only one.

use gimli::{AttributeValue, DwAt, Reader as _};

use super::modules::{Reader, Symbol};

/// `DW_AT_GNU_tail_call` (GCC's DWARF 4 extension).
const DW_AT_GNU_TAIL_CALL: DwAt = DwAt(0x2115);
/// `DW_TAG_GNU_call_site`.
const DW_TAG_GNU_CALL_SITE: gimli::DwTag = gimli::DwTag(0x4109);
/// Longest chain of tail calls looked for.
const MAX_DEPTH: usize = 4;

/// One call instruction, as DWARF describes it (ELF addresses).
#[derive(Debug, Clone)]
struct CallSite {
    /// Address after the call (or jump) instruction.
    return_pc: u64,
    /// Address of the called function, when DWARF names it.
    target: Option<u64>,
    /// The call is a jump that replaces the caller's frame.
    tail: bool,
}

/// DWARF and symbols of one module, for call-site queries.
pub struct CallSites<'a> {
    /// The module's DWARF.
    pub ctx: &'a addr2line::Context<Reader>,
    /// Its symbols, sorted by address.
    pub symbols: &'a [Symbol],
}

impl CallSites<'_> {
    /// The functions (ELF addresses of the return points of their tail calls),
    /// innermost first, between a caller whose call returns to `caller_ret` and a
    /// callee running in the function that starts at `callee`. Empty when the caller
    /// called the callee directly, or when the chain is unknown or not unique.
    pub fn chain(&self, caller_ret: u64, callee: u64) -> Vec<u64> {
        let Some(site) = self
            .sites_near(caller_ret.wrapping_sub(1))
            .into_iter()
            .find(|s| s.return_pc == caller_ret)
        else {
            return Vec::new();
        };
        let Some(target) = site.target else {
            return Vec::new();
        };
        if target == callee {
            return Vec::new();
        }
        let mut found: Vec<Vec<u64>> = Vec::new();
        self.search(target, callee, &mut Vec::new(), &mut found);
        match found.as_slice() {
            [one] => one.iter().rev().copied().collect(),
            _ => Vec::new(),
        }
    }

    /// Depth-first search of tail calls from `func` to `callee`; `path` holds the
    /// return points taken so far.
    fn search(&self, func: u64, callee: u64, path: &mut Vec<u64>, found: &mut Vec<Vec<u64>>) {
        if path.len() >= MAX_DEPTH || found.len() > 1 {
            return;
        }
        let end = self
            .symbols
            .iter()
            .find(|s| s.addr == func && s.size > 0)
            .map(|s| s.addr + s.size);
        let Some(end) = end else { return };
        for s in self.sites_near(func) {
            if !s.tail || s.return_pc <= func || s.return_pc > end {
                continue;
            }
            let Some(t) = s.target else { continue };
            path.push(s.return_pc);
            if t == callee {
                found.push(path.clone());
            } else if t != func {
                self.search(t, callee, path, found);
            }
            path.pop();
        }
    }

    /// Every call site of the compilation unit that holds `addr`.
    fn sites_near(&self, addr: u64) -> Vec<CallSite> {
        let Some(unit) = self.ctx.find_dwarf_and_unit(addr).skip_all_loads() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut entries = unit.entries();
        while let Ok(Some((_, e))) = entries.next_dfs() {
            let gnu = e.tag() == DW_TAG_GNU_CALL_SITE;
            if e.tag() != gimli::DW_TAG_call_site && !gnu {
                continue;
            }
            let ret_attr = if gnu {
                gimli::DW_AT_low_pc
            } else {
                gimli::DW_AT_call_return_pc
            };
            let Some(return_pc) = e
                .attr_value(ret_attr)
                .ok()
                .flatten()
                .and_then(|v| unit.attr_address(v).ok().flatten())
            else {
                continue;
            };
            let tail = flag(e, gimli::DW_AT_call_tail_call) || flag(e, DW_AT_GNU_TAIL_CALL);
            let origin = e
                .attr_value(gimli::DW_AT_call_origin)
                .ok()
                .flatten()
                .or_else(|| e.attr_value(gimli::DW_AT_abstract_origin).ok().flatten());
            let target = origin.and_then(|o| self.function_address(&unit, o, 0));
            out.push(CallSite {
                return_pc,
                target,
                tail,
            });
        }
        out
    }

    /// The address of the function a reference names: its low_pc, or else its
    /// symbol (declarations of functions defined in other units have no address).
    fn function_address(
        &self,
        unit: &gimli::UnitRef<'_, Reader>,
        origin: AttributeValue<Reader>,
        depth: usize,
    ) -> Option<u64> {
        let AttributeValue::UnitRef(off) = origin else {
            return None;
        };
        let e = unit.entry(off).ok()?;
        if let Some(pc) = e
            .attr_value(gimli::DW_AT_low_pc)
            .ok()
            .flatten()
            .and_then(|v| unit.attr_address(v).ok().flatten())
        {
            return Some(pc);
        }
        for name_attr in [gimli::DW_AT_linkage_name, gimli::DW_AT_name] {
            if let Some(v) = e.attr_value(name_attr).ok().flatten() {
                if let Ok(name) = unit.attr_string(v) {
                    let name = name.to_string_lossy().ok()?.into_owned();
                    if let Some(s) = self.symbols.iter().find(|s| s.name == name) {
                        return Some(s.addr);
                    }
                }
            }
        }
        if depth < 2 {
            for link in [gimli::DW_AT_abstract_origin, gimli::DW_AT_specification] {
                if let Some(v) = e.attr_value(link).ok().flatten() {
                    return self.function_address(unit, v, depth + 1);
                }
            }
        }
        None
    }
}

fn flag(e: &gimli::DebuggingInformationEntry<'_, '_, Reader>, at: DwAt) -> bool {
    matches!(e.attr_value(at), Ok(Some(AttributeValue::Flag(true))))
}
