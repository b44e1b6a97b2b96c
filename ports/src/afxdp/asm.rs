//! A tiny eBPF assembler: just the instructions the XDP program needs, with forward labels.
//!
//! Each instruction is the kernel's `struct bpf_insn` — `code: u8`, `dst_reg: 4 bits` (low
//! nibble), `src_reg: 4 bits` (high nibble), `off: i16`, `imm: i32`, little-endian on the
//! targets we build for — except `ld_map_fd`, the 16-byte `BPF_LD | BPF_IMM | BPF_DW` with
//! `src_reg = BPF_PSEUDO_MAP_FD`, which takes two slots. Jumps name a [`Label`]; [`Asm::finish`]
//! resolves them to slot offsets (`target - (jump + 1)`) and fails on an unbound or
//! out-of-range label instead of emitting a broken program.
//!
//! Rejected: embedding a clang-built object (no clang on the build machines, and an ELF loader
//! is far more code than this), `aya`/`libbpf-rs` (a large dependency for ~70 instructions).

/// An eBPF register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg(pub u8);

/// Return value / helper result.
pub const R0: Reg = Reg(0);
/// First argument (the context on entry).
pub const R1: Reg = Reg(1);
/// Second argument.
pub const R2: Reg = Reg(2);
/// Third argument.
pub const R3: Reg = Reg(3);
/// Fourth argument.
pub const R4: Reg = Reg(4);
/// Fifth argument.
pub const R5: Reg = Reg(5);
/// Callee-saved.
pub const R6: Reg = Reg(6);
/// Callee-saved.
pub const R7: Reg = Reg(7);
/// Read-only frame pointer.
pub const R10: Reg = Reg(10);

/// Memory access width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// 1 byte.
    B,
    /// 2 bytes.
    H,
    /// 4 bytes.
    W,
    /// 8 bytes.
    Dw,
}

impl Size {
    fn code(self) -> u8 {
        match self {
            Size::W => 0x00,
            Size::H => 0x08,
            Size::B => 0x10,
            Size::Dw => 0x18,
        }
    }
}

/// 64-bit ALU operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alu {
    /// `dst += src`
    Add = 0x00,
    /// `dst &= src`
    And = 0x50,
    /// `dst <<= src`
    Lsh = 0x60,
    /// `dst >>= src`
    Rsh = 0x70,
    /// `dst = src`
    Mov = 0xb0,
}

/// Conditional jump operations (64-bit compares).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    /// `==`
    Eq = 0x10,
    /// unsigned `>`
    Gt = 0x20,
    /// `&` is non-zero
    Set = 0x40,
    /// `!=`
    Ne = 0x50,
    /// unsigned `<`
    Lt = 0xa0,
}

const CLASS_LD: u8 = 0x00;
const CLASS_LDX: u8 = 0x01;
const CLASS_ST: u8 = 0x02;
const CLASS_STX: u8 = 0x03;
const CLASS_JMP: u8 = 0x05;
const CLASS_ALU64: u8 = 0x07;
const MODE_IMM: u8 = 0x00;
const MODE_MEM: u8 = 0x60;
const SRC_K: u8 = 0x00;
const SRC_X: u8 = 0x08;
const OP_JA: u8 = 0x00;
const OP_CALL: u8 = 0x80;
const OP_EXIT: u8 = 0x90;
/// `src_reg` of a 64-bit immediate load whose immediate is a map file descriptor.
const PSEUDO_MAP_FD: u8 = 1;

/// One 8-byte instruction slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register.
    pub dst: u8,
    /// Source register.
    pub src: u8,
    /// Signed offset.
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

impl Insn {
    /// The kernel's byte encoding (`struct bpf_insn`, little-endian).
    pub fn to_bytes(self) -> [u8; 8] {
        let off = self.off.to_le_bytes();
        let imm = self.imm.to_le_bytes();
        [
            self.code,
            (self.dst & 0x0f) | (self.src << 4),
            off[0],
            off[1],
            imm[0],
            imm[1],
            imm[2],
            imm[3],
        ]
    }
}

/// A jump target, created with [`Asm::label`] and placed with [`Asm::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

/// Why a program could not be assembled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    /// A jump names a label that was never bound.
    #[error("label {0} is used but never bound")]
    Unbound(usize),
    /// A jump is farther than a 16-bit offset reaches.
    #[error("jump at slot {0} is out of range")]
    OutOfRange(usize),
}

/// An instruction buffer with labels.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    /// An empty program.
    pub fn new() -> Self {
        Asm::default()
    }

    fn push(&mut self, code: u8, dst: Reg, src: Reg, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            dst: dst.0,
            src: src.0,
            off,
            imm,
        });
    }

    /// A new, unbound label.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Binds `label` to the next instruction.
    pub fn bind(&mut self, label: Label) {
        self.labels[label.0] = Some(self.insns.len());
    }

    /// `dst = *(size *)(src + off)`
    pub fn ldx(&mut self, size: Size, dst: Reg, src: Reg, off: i16) {
        self.push(CLASS_LDX | MODE_MEM | size.code(), dst, src, off, 0);
    }

    /// `*(size *)(dst + off) = src`
    pub fn stx(&mut self, size: Size, dst: Reg, off: i16, src: Reg) {
        self.push(CLASS_STX | MODE_MEM | size.code(), dst, src, off, 0);
    }

    /// `*(size *)(dst + off) = imm`
    pub fn st(&mut self, size: Size, dst: Reg, off: i16, imm: i32) {
        self.push(CLASS_ST | MODE_MEM | size.code(), dst, Reg(0), off, imm);
    }

    /// `dst op= imm` (64-bit)
    pub fn alu_imm(&mut self, op: Alu, dst: Reg, imm: i32) {
        self.push(CLASS_ALU64 | op as u8 | SRC_K, dst, Reg(0), 0, imm);
    }

    /// `dst op= src` (64-bit)
    pub fn alu_reg(&mut self, op: Alu, dst: Reg, src: Reg) {
        self.push(CLASS_ALU64 | op as u8 | SRC_X, dst, src, 0, 0);
    }

    /// `dst = imm`
    pub fn mov_imm(&mut self, dst: Reg, imm: i32) {
        self.alu_imm(Alu::Mov, dst, imm);
    }

    /// `dst = src`
    pub fn mov_reg(&mut self, dst: Reg, src: Reg) {
        self.alu_reg(Alu::Mov, dst, src);
    }

    /// `dst += imm`
    pub fn add_imm(&mut self, dst: Reg, imm: i32) {
        self.alu_imm(Alu::Add, dst, imm);
    }

    /// `if dst cond imm goto target`
    pub fn jmp_imm(&mut self, cond: Cond, dst: Reg, imm: i32, target: Label) {
        self.fixups.push((self.insns.len(), target));
        self.push(CLASS_JMP | cond as u8 | SRC_K, dst, Reg(0), 0, imm);
    }

    /// `if dst cond src goto target`
    pub fn jmp_reg(&mut self, cond: Cond, dst: Reg, src: Reg, target: Label) {
        self.fixups.push((self.insns.len(), target));
        self.push(CLASS_JMP | cond as u8 | SRC_X, dst, src, 0, 0);
    }

    /// `goto target`
    pub fn ja(&mut self, target: Label) {
        self.fixups.push((self.insns.len(), target));
        self.push(CLASS_JMP | OP_JA, Reg(0), Reg(0), 0, 0);
    }

    /// Calls helper number `helper`.
    pub fn call(&mut self, helper: i32) {
        self.push(CLASS_JMP | OP_CALL, Reg(0), Reg(0), 0, helper);
    }

    /// `dst = map` — the two-slot 64-bit immediate load the verifier rewrites to a map pointer.
    pub fn ld_map_fd(&mut self, dst: Reg, map_fd: i32) {
        self.push(
            CLASS_LD | MODE_IMM | Size::Dw.code(),
            dst,
            Reg(PSEUDO_MAP_FD),
            0,
            map_fd,
        );
        self.push(0, Reg(0), Reg(0), 0, 0);
    }

    /// `return r0`
    pub fn exit(&mut self) {
        self.push(CLASS_JMP | OP_EXIT, Reg(0), Reg(0), 0, 0);
    }

    /// Resolves the labels and returns the instruction slots.
    pub fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        for &(at, label) in &self.fixups {
            let target = self.labels[label.0].ok_or(AsmError::Unbound(label.0))?;
            let off = target as i64 - (at as i64 + 1);
            self.insns[at].off = i16::try_from(off).map_err(|_| AsmError::OutOfRange(at))?;
        }
        Ok(self.insns)
    }
}

/// The byte image of a program (what `BPF_PROG_LOAD` reads).
pub fn to_bytes(insns: &[Insn]) -> Vec<u8> {
    insns.iter().flat_map(|i| i.to_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(f: impl FnOnce(&mut Asm)) -> Vec<u8> {
        let mut a = Asm::new();
        f(&mut a);
        to_bytes(&a.finish().unwrap())
    }

    // Expected bytes as printed by `llvm-objdump -d` for the same instructions.
    #[test]
    fn encodes_like_llvm() {
        assert_eq!(one(|a| a.mov_imm(R0, 2)), [0xb7, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(one(|a| a.exit()), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        // r2 = *(u32 *)(r1 + 4)
        assert_eq!(
            one(|a| a.ldx(Size::W, R2, R1, 4)),
            [0x61, 0x12, 4, 0, 0, 0, 0, 0]
        );
        // r5 = *(u16 *)(r2 + 12)
        assert_eq!(
            one(|a| a.ldx(Size::H, R5, R2, 12)),
            [0x69, 0x25, 12, 0, 0, 0, 0, 0]
        );
        // r0 = *(u8 *)(r2 + 9)
        assert_eq!(
            one(|a| a.ldx(Size::B, R0, R2, 9)),
            [0x71, 0x20, 9, 0, 0, 0, 0, 0]
        );
        // *(u32 *)(r10 - 12) = r0
        assert_eq!(
            one(|a| a.stx(Size::W, R10, -12, R0)),
            [0x63, 0x0a, 0xf4, 0xff, 0, 0, 0, 0]
        );
        // *(u64 *)(r10 - 24) = 0
        assert_eq!(
            one(|a| a.st(Size::Dw, R10, -24, 0)),
            [0x7a, 0x0a, 0xe8, 0xff, 0, 0, 0, 0]
        );
        // *(u16 *)(r10 - 14) = 0xffff
        assert_eq!(
            one(|a| a.st(Size::H, R10, -14, 0xffff)),
            [0x6a, 0x0a, 0xf2, 0xff, 0xff, 0xff, 0, 0]
        );
        // r6 = r1 ; r2 += -24 ; r2 += r5 ; r5 &= 15 ; r5 <<= 2
        assert_eq!(one(|a| a.mov_reg(R6, R1)), [0xbf, 0x16, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            one(|a| a.add_imm(R2, -24)),
            [0x07, 0x02, 0, 0, 0xe8, 0xff, 0xff, 0xff]
        );
        assert_eq!(
            one(|a| a.alu_reg(Alu::Add, R2, R5)),
            [0x0f, 0x52, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            one(|a| a.alu_imm(Alu::And, R5, 15)),
            [0x57, 0x05, 0, 0, 15, 0, 0, 0]
        );
        assert_eq!(
            one(|a| a.alu_imm(Alu::Lsh, R5, 2)),
            [0x67, 0x05, 0, 0, 2, 0, 0, 0]
        );
        // call bpf_map_lookup_elem
        assert_eq!(one(|a| a.call(1)), [0x85, 0, 0, 0, 1, 0, 0, 0]);
        // r1 = map fd 5 (ld_imm64 with BPF_PSEUDO_MAP_FD)
        assert_eq!(
            one(|a| a.ld_map_fd(R1, 5)),
            [
                0x18, 0x11, 0, 0, 5, 0, 0, 0, //
                0, 0, 0, 0, 0, 0, 0, 0
            ]
        );
    }

    #[test]
    fn resolves_forward_and_backward_jumps() {
        let mut a = Asm::new();
        let end = a.label();
        let top = a.label();
        a.bind(top);
        a.jmp_reg(Cond::Gt, R4, R3, end); // slot 0 -> 3: off 2
        a.jmp_imm(Cond::Ne, R5, 0x0081, top); // slot 1 -> 0: off -2
        a.ja(end); // slot 2 -> 3: off 0
        a.bind(end);
        a.exit();
        let bytes = to_bytes(&a.finish().unwrap());
        assert_eq!(&bytes[0..8], &[0x2d, 0x34, 2, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[8..16], &[0x55, 0x05, 0xfe, 0xff, 0x81, 0, 0, 0]);
        assert_eq!(&bytes[16..24], &[0x05, 0, 0, 0, 0, 0, 0, 0]);
        // jset and jlt
        let mut a = Asm::new();
        let l = a.label();
        a.jmp_imm(Cond::Set, R0, 0xff3f, l);
        a.jmp_imm(Cond::Lt, R5, 5, l);
        a.bind(l);
        a.exit();
        let bytes = to_bytes(&a.finish().unwrap());
        assert_eq!(&bytes[0..8], &[0x45, 0x00, 1, 0, 0x3f, 0xff, 0, 0]);
        assert_eq!(&bytes[8..16], &[0xa5, 0x05, 0, 0, 5, 0, 0, 0]);
    }

    #[test]
    fn unbound_label_is_an_error() {
        let mut a = Asm::new();
        let l = a.label();
        a.ja(l);
        assert_eq!(a.finish(), Err(AsmError::Unbound(0)));
    }
}
