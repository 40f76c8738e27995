"""What special instructions mean to the kernel and to libbpf, beyond the kernel's own
disassembly text: a note per instruction, printed after it.

- libbpf's poisoned instructions, calls of helpers no kernel has, chosen so that the
  verifier's refusal names them (libbpf v1.1.2):
  ``call unknown#195896080`` (0xbad2310, "bad relo") from ``bpf_core_poison_insn``
  (relo_core.c): a CO-RE relocation libbpf could not resolve, harmless in dead code;
  ``call unknown#2001000000+N`` from ``poison_map_ldimm64`` (libbpf.c): the ld_imm64 of
  map #N of the object, a map libbpf did not create (autocreate off);
  ``call unknown#2002000000+N`` from ``poison_kfunc_call``: a call of extern #N, a weak
  kfunc the kernel lacks.
- bpf-to-bpf calls (``call pc+N``, BPF_PSEUDO_CALL) and ld_imm64 of a subprogram's
  address (BPF_PSEUDO_FUNC, callbacks): the callee's name from the PROG_LOAD's
  func_info and BTF.
- kfunc calls (BPF_PSEUDO_KFUNC_CALL) whose name the kernel's BTF could not give:
  which BTF the id is into (vmlinux, or the module BTF at fd_array[off]).
- ld_imm64 of a map value (BPF_PSEUDO_MAP_VALUE/MAP_IDX_VALUE): the global variable at
  that offset, from the map's BTF (a DATASEC of .bss/.data/.rodata).

Pure: instructions and names in, text out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from bpfreplay.decode.insn import CallSrc, Insn, LdImm64Src

CORE_POISON = 195896080            # 0xbad2310, bpf_core_poison_insn()
MAP_LDIMM64_POISON_BASE = 2001000000  # + map index, poison_map_ldimm64()
KFUNC_CALL_POISON_BASE = 2002000000   # + extern index, poison_kfunc_call()
_POISON_SPAN = 1000000


def poison_note(insn: Insn) -> str | None:
    """The note of a libbpf poison call, None for any other instruction."""
    if not insn.is_call or insn.src != CallSrc.HELPER or insn.dst or insn.off:
        return None
    imm = insn.imm
    if imm == CORE_POISON:
        return ("libbpf: poisoned CO-RE relocation (bpf_core_poison_insn): the relocation "
                "could not be resolved on this kernel; the verifier refuses it if reachable")
    if MAP_LDIMM64_POISON_BASE <= imm < MAP_LDIMM64_POISON_BASE + _POISON_SPAN:
        return (f"libbpf: poisoned load of map #{imm - MAP_LDIMM64_POISON_BASE} of the "
                f"object, which libbpf did not create (poison_map_ldimm64)")
    if KFUNC_CALL_POISON_BASE <= imm < KFUNC_CALL_POISON_BASE + _POISON_SPAN:
        return (f"libbpf: poisoned call of extern #{imm - KFUNC_CALL_POISON_BASE}, a weak "
                f"kfunc this kernel lacks (poison_kfunc_call)")
    return None


def instruction_notes(insns: Iterable[Insn], *,
                      function_at: Callable[[int], str | None] = lambda index: None,
                      kfunc_named: Callable[[Insn], bool] = lambda insn: False,
                      map_value_at: Callable[[Insn], str | None] = lambda insn: None,
                      ) -> dict[int, str]:
    """Instruction index -> note. ``function_at(index)``: the name of the (sub)program
    starting at ``index`` (func_info); ``kfunc_named(insn)``: whether the disassembly
    already named that kfunc; ``map_value_at(insn)``: the variable an ld_imm64 of a map
    value points into."""
    notes: dict[int, str] = {}
    for insn in insns:
        note = poison_note(insn)
        if note is None and insn.is_call and insn.src == CallSrc.PSEUDO_CALL:
            name = function_at(insn.index + 1 + insn.imm)
            note = f"call of subprogram {name}" if name else None
        elif note is None and insn.is_call and insn.src == CallSrc.KFUNC \
                and not kfunc_named(insn):
            where = "vmlinux BTF" if insn.off == 0 else f"the module BTF at fd_array[{insn.off}]"
            note = f"kfunc: BTF id {insn.imm} of {where} (no BTF here to name it)"
        elif note is None and insn.is_ld_imm64 and insn.src == LdImm64Src.FUNC:
            name = function_at(insn.index + 1 + insn.imm)
            note = f"address of subprogram {name}" if name else None
        elif note is None and insn.is_ld_imm64 and insn.src in (LdImm64Src.MAP_VALUE,
                                                                  LdImm64Src.MAP_IDX_VALUE):
            note = map_value_at(insn)
        if note:
            notes[insn.index] = note
    return notes
