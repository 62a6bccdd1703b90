// biotrain's testbench for the CV32E40P core (with its FPU) under Verilator.
//
// One flat memory serves the core's two OBI ports (instruction and data) with a fixed latency
// each: a request is granted at once and its response arrives `latency` cycles later, in order.
// Latency 1 is an L1-like single-cycle SRAM. Three memory-mapped devices give the program a way
// in and out without an operating system:
//   0x00100000  exit:    write 0x5555 = pass, (code << 16) | 0x3333 = fail with code
//   0x10000000  console: write a byte to print it
//   0x20000000  files:   ARG0..ARG2 at +0/+4/+8, writing CMD at +12 runs a command, RESULT at +16
//               (1 open(name, mode 0=read 1=write), 2 read(h, buf, n), 3 write(h, buf, n), 4 close(h));
//               the bytes move between the host file and the simulated memory directly.
// A fetch outside the program's executable segments means the core trapped: the run stops there.
// Usage: tb PROGRAM.elf [--ilat N] [--dlat N] [--max-cycles N] [--trace]; prints the cycle count on
// stderr at the end (--trace: every fetch and data access); the exit status is the program's.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "Vcv32e40p_top.h"
#include "verilated.h"

namespace {

constexpr uint32_t kRamBase = 0x80000000u;
constexpr uint32_t kRamSize = 0x08000000u;  // 128 MiB
constexpr uint32_t kExitDev = 0x00100000u;
constexpr uint32_t kConsole = 0x10000000u;
constexpr uint32_t kFileDev = 0x20000000u;

std::vector<uint8_t> ram(kRamSize);

bool in_ram(uint32_t a, uint32_t n) { return a >= kRamBase && a - kRamBase <= kRamSize - n; }

uint32_t ram_read(uint32_t a) {
  if (!in_ram(a & ~3u, 4)) return 0;
  uint32_t v;
  std::memcpy(&v, &ram[(a & ~3u) - kRamBase], 4);
  return v;
}

struct Segment { uint32_t lo, hi; };
std::vector<Segment> exec_segments;
uint32_t entry_point = kRamBase;

void load_elf(const char *path) {
  FILE *f = std::fopen(path, "rb");
  if (!f) { std::fprintf(stderr, "tb: cannot open %s\n", path); std::exit(90); }
  std::vector<uint8_t> img;
  uint8_t buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) img.insert(img.end(), buf, buf + n);
  std::fclose(f);
  auto u16 = [&](size_t o) { uint16_t v; std::memcpy(&v, &img[o], 2); return v; };
  auto u32 = [&](size_t o) { uint32_t v; std::memcpy(&v, &img[o], 4); return v; };
  if (img.size() < 52 || std::memcmp(img.data(), "\x7f" "ELF", 4) != 0 || img[4] != 1 || u16(18) != 243) {
    std::fprintf(stderr, "tb: %s is not a 32-bit RISC-V ELF\n", path);
    std::exit(90);
  }
  entry_point = u32(24);
  const uint32_t phoff = u32(28), phentsize = u16(42), phnum = u16(44);
  for (uint32_t i = 0; i < phnum; i++) {
    const size_t ph = phoff + i * phentsize;
    if (u32(ph) != 1) continue;  // PT_LOAD
    const uint32_t off = u32(ph + 4), paddr = u32(ph + 12), filesz = u32(ph + 16), memsz = u32(ph + 20);
    const uint32_t flags = u32(ph + 24);
    if (!memsz) continue;
    if (!in_ram(paddr, memsz)) { std::fprintf(stderr, "tb: segment at 0x%08x outside RAM\n", paddr); std::exit(90); }
    std::memcpy(&ram[paddr - kRamBase], &img[off], filesz);
    if (flags & 1) exec_segments.push_back({paddr, paddr + memsz});
  }
}

bool executable(uint32_t a) {
  for (const auto &s : exec_segments)
    if (a >= s.lo && a < s.hi) return true;
  return false;
}

// the file device: host files the program opens by name (relative to the working directory)
std::vector<FILE *> files;
uint32_t file_args[3], file_result;

std::string read_cstring(uint32_t a) {
  std::string s;
  while (in_ram(a, 1) && ram[a - kRamBase] && s.size() < 4096) s.push_back((char)ram[a++ - kRamBase]);
  return s;
}

void file_command(uint32_t cmd) {
  const uint32_t a0 = file_args[0], a1 = file_args[1], a2 = file_args[2];
  file_result = 0xffffffffu;
  if (cmd == 1) {
    FILE *f = std::fopen(read_cstring(a0).c_str(), a1 ? "wb" : "rb");
    if (f) { files.push_back(f); file_result = (uint32_t)(files.size() - 1); }
  } else if ((cmd == 2 || cmd == 3) && a0 < files.size() && files[a0] && in_ram(a1, a2)) {
    file_result = (uint32_t)(cmd == 2 ? std::fread(&ram[a1 - kRamBase], 1, a2, files[a0])
                                      : std::fwrite(&ram[a1 - kRamBase], 1, a2, files[a0]));
  } else if (cmd == 4 && a0 < files.size() && files[a0]) {
    file_result = std::fclose(files[a0]) == 0 ? 0 : 0xffffffffu;
    files[a0] = nullptr;
  }
}

struct Pending { uint64_t due; uint32_t rdata; };

}  // namespace

int main(int argc, char **argv) {
  // Registers without a reset start from a fixed pseudo-random pattern, as on silicon (and the
  // FPU's divide/square-root unit needs a non-zero one), the same for every run: cycle counts are
  // deterministic. Overridable with +verilator+seed+N.
  Verilated::randReset(2);
  Verilated::randSeed(1);
  Verilated::commandArgs(argc, argv);
  const char *elf = nullptr;
  uint64_t ilat = 1, dlat = 1, max_cycles = 0;
  bool trace = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() -> uint64_t {
      if (i + 1 >= argc) { std::fprintf(stderr, "tb: %s needs a value\n", a.c_str()); std::exit(90); }
      return std::strtoull(argv[++i], nullptr, 0);
    };
    if (a == "--ilat") ilat = next();
    else if (a == "--dlat") dlat = next();
    else if (a == "--max-cycles") max_cycles = next();
    else if (a == "--trace") trace = true;
    else if (a[0] != '+' && !elf) elf = argv[i];
  }
  if (!elf || ilat < 1 || dlat < 1) {
    std::fprintf(stderr, "usage: tb PROGRAM.elf [--ilat N>=1] [--dlat N>=1] [--max-cycles N]\n");
    return 90;
  }
  load_elf(elf);

  auto top = std::make_unique<Vcv32e40p_top>();
  top->pulp_clock_en_i = 1;
  top->scan_cg_en_i = 0;
  top->boot_addr_i = entry_point;
  top->mtvec_addr_i = 0;  // no trap handler: a trap fetches from 0, outside the program
  top->dm_halt_addr_i = 0;
  top->dm_exception_addr_i = 0;
  top->hart_id_i = 0;
  top->irq_i = 0;
  top->debug_req_i = 0;
  top->fetch_enable_i = 1;
  top->instr_gnt_i = 1;
  top->data_gnt_i = 1;
  top->instr_rvalid_i = 0;
  top->data_rvalid_i = 0;
  // a falling reset edge first: asynchronous resets fire even where a clock gate starts closed
  top->rst_ni = 1;
  top->clk_i = 0;
  top->eval();
  top->rst_ni = 0;
  top->eval();
  for (int i = 0; i < 4; i++) { top->clk_i = 1; top->eval(); top->clk_i = 0; top->eval(); }
  top->rst_ni = 1;
  top->eval();

  std::deque<Pending> iq, dq;
  uint64_t cycle = 0;
  uint32_t last_fetch = 0;
  int status = -1;
  while (status < 0) {
    // responses due this cycle
    top->instr_rvalid_i = !iq.empty() && iq.front().due == cycle;
    if (top->instr_rvalid_i) { top->instr_rdata_i = iq.front().rdata; iq.pop_front(); }
    top->data_rvalid_i = !dq.empty() && dq.front().due == cycle;
    if (top->data_rvalid_i) { top->data_rdata_i = dq.front().rdata; dq.pop_front(); }
    top->clk_i = 0;
    top->eval();
    // requests of this cycle, granted at once
    if (top->instr_req_o) {
      const uint32_t a = top->instr_addr_o;
      if (!executable(a)) {
        std::fprintf(stderr, "tb: the core fetched from 0x%08x, outside the program (a trap) at cycle %llu\n", a,
                     (unsigned long long)cycle);
        status = 91;
        break;
      }
      last_fetch = a;
      if (trace) std::fprintf(stderr, "%llu fetch %08x\n", (unsigned long long)cycle, a);
      iq.push_back({cycle + ilat, ram_read(a)});
    }
    if (top->data_req_o) {
      const uint32_t a = top->data_addr_o, be = top->data_be_o, wd = top->data_wdata_o;
      if (trace) std::fprintf(stderr, "%llu data %08x we=%d be=%x wd=%08x\n", (unsigned long long)cycle, a, (int)top->data_we_o, be, wd);
      uint32_t rd = 0;
      if (top->data_we_o) {
        if (in_ram(a & ~3u, 4)) {
          for (int b = 0; b < 4; b++)
            if (be & (1u << b)) ram[(a & ~3u) - kRamBase + b] = (uint8_t)(wd >> (8 * b));
        } else if (a == kExitDev) {
          status = (wd & 0xffff) == 0x5555 ? 0 : (int)(wd >> 16) ? (int)(wd >> 16) : 1;
        } else if (a == kConsole) {
          std::fputc((int)(wd & 0xff), stdout);
        } else if (a >= kFileDev && a < kFileDev + 12) {
          file_args[(a - kFileDev) / 4] = wd;
        } else if (a == kFileDev + 12) {
          file_command(wd);
        } else {
          std::fprintf(stderr, "tb: store to unmapped 0x%08x at cycle %llu\n", a, (unsigned long long)cycle);
          status = 92;
        }
      } else if (a == kFileDev + 16) {
        rd = file_result;
      } else if (in_ram(a & ~3u, 4)) {
        rd = ram_read(a);
      } else {
        std::fprintf(stderr, "tb: load from unmapped 0x%08x at cycle %llu\n", a, (unsigned long long)cycle);
        status = 92;
      }
      dq.push_back({cycle + dlat, rd});
    }
    top->clk_i = 1;
    top->eval();
    cycle++;
    if (max_cycles && cycle >= max_cycles) {
      std::fprintf(stderr, "tb: stopped after --max-cycles %llu (last fetch at 0x%08x)\n", (unsigned long long)max_cycles, last_fetch);
      status = 93;
    }
  }
  std::fflush(stdout);
  std::fprintf(stderr, "tb: cycles %llu\n", (unsigned long long)cycle);
  for (FILE *f : files)
    if (f) std::fclose(f);
  top->final();
  return status;
}
