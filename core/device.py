"""Choose Caffe's CPU or GPU mode, checking first that GPU mode can work.

Caffe's GPU code aborts the whole process through a glog CHECK when something is missing (a
CPU-only build, no driver, a driver older than the CUDA runtime, no such device, no kernels for
the GPU's architecture). `check_gpu` finds each of these without calling into Caffe's GPU code
and raises a UserError that says what is wrong and what to do:

  - pycaffe built with CUDA: read from the ELF dynamic section of pycaffe's extension and of
    libcaffe (a CUDA build needs libcudart / libcublas / libcurand; a CPU-only build does not),
    so it also works for a Caffe the user built elsewhere (make setup CAFFE_PYTHON=...);
  - driver and device: libcuda.so.1 through ctypes (cuInit, cuDeviceGetCount, ...);
  - architectures: from gwd-caffe-build.json, which scripts/build_caffe.sh writes beside the
    `caffe` package of a CUDA build (skipped for other builds).

Command line:  python -m core.device [--gpu N]   (without --gpu: what this installation has)
"""
import argparse
import ctypes
import dataclasses
import importlib.util
import pathlib
import re
import struct
from typing import Optional

from core.args import ArgumentParser
from core.errors import UserError, cli
from core.inputs import read_json_file

CUDA_LIBS = re.compile(r"^lib(cudart|cublas|curand)\.so(\.\d+)*$")
BUILD_INFO = "gwd-caffe-build.json"

# CUresult codes worth a specific hint (cuda.h)
_NO_DEVICE, _STUB, _INSUFFICIENT = 100, 34, 35
_CC_MAJOR, _CC_MINOR = 75, 76   # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR


# ---------------------------------------------------------------- ELF dynamic section
def elf_dynamic(path):
    """The DT_NEEDED names and the DT_RUNPATH/DT_RPATH folders of an ELF shared object.

    path: the file. Returns (needed: list of str, search: list of str), both in file order.
    Reads the program headers (PT_DYNAMIC), so it works on stripped files too.
    """
    data = pathlib.Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        raise UserError(f"{path}: not an ELF shared library")
    is64, end = data[4] == 2, "<" if data[5] == 1 else ">"
    if is64:
        phoff, = struct.unpack_from(end + "Q", data, 32)
        phentsize, phnum = struct.unpack_from(end + "HH", data, 54)
    else:
        phoff, = struct.unpack_from(end + "I", data, 28)
        phentsize, phnum = struct.unpack_from(end + "HH", data, 42)
    loads, dynamic = [], None
    for i in range(phnum):
        off = phoff + i * phentsize
        if is64:
            p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(end + "IIQQQQ", data, off)
        else:
            p_type, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(end + "IIIII", data, off)
        if p_type == 1:       # PT_LOAD
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 2:     # PT_DYNAMIC
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return [], []
    fmt = end + ("qQ" if is64 else "iI")
    entries, strtab = [], None
    for off in range(dynamic[0], dynamic[0] + dynamic[1], struct.calcsize(fmt)):
        tag, val = struct.unpack_from(fmt, data, off)
        if tag == 0:          # DT_NULL
            break
        if tag == 5:          # DT_STRTAB: a virtual address; find it in the file
            strtab = next((val - va + fo for va, fo, sz in loads if va <= val < va + sz), None)
        entries.append((tag, val))
    if strtab is None:
        raise UserError(f"{path}: ELF dynamic section without a string table")

    def string(i):
        return data[strtab + i:data.index(b"\0", strtab + i)].decode()
    needed = [string(v) for t, v in entries if t == 1]                  # DT_NEEDED
    search = [d for t, v in entries if t in (15, 29) for d in string(v).split(":") if d]
    return needed, search


@dataclasses.dataclass(frozen=True)
class CaffeBuild:
    """What the pycaffe in use was built with."""
    caffe_dir: pathlib.Path        # the `caffe` package folder
    cuda_libs: tuple               # CUDA libraries it needs (empty: a CPU-only build)
    cuda_major: Optional[int]      # CUDA runtime major version, when linked dynamically
    arch_bin: tuple = ()           # from gwd-caffe-build.json: real architectures, e.g. (80, 90)
    arch_ptx: tuple = ()           # ... and PTX (virtual) architectures

    @property
    def cuda(self):
        return bool(self.cuda_libs)

    def describe(self):
        if not self.cuda:
            return f"pycaffe at {self.caffe_dir}: CPU-only build"
        s = f"pycaffe at {self.caffe_dir}: CUDA build ({', '.join(self.cuda_libs)})"
        if self.arch_bin or self.arch_ptx:
            s += ("; GPU code for " + " ".join(f"sm_{a}" for a in self.arch_bin)
                  + "".join(f" compute_{a}" for a in self.arch_ptx))
        return s


def find_caffe_dir():
    """The folder of the `caffe` package that `import caffe` would load, without importing it."""
    spec = importlib.util.find_spec("caffe")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("pycaffe not found: run `make setup` (or make setup CAFFE_PYTHON=/path/to/caffe/python)")
    return pathlib.Path(list(spec.submodule_search_locations)[0])


def _loaded_paths():
    """Files mapped into this process (Linux), for a library the search folders do not hold."""
    try:
        with open("/proc/self/maps") as f:
            return {pathlib.Path(line.split(None, 5)[5].strip()) for line in f if len(line.split(None, 5)) == 6}
    except OSError:
        return set()


def caffe_build(caffe_dir=None):
    """Inspect pycaffe's extension module and libcaffe. caffe_dir: the `caffe` package folder
    (default: the one on sys.path). Returns a CaffeBuild."""
    caffe_dir = pathlib.Path(caffe_dir) if caffe_dir else find_caffe_dir()
    exts = sorted(caffe_dir.glob("_caffe*.so"))
    if not exts:
        raise UserError(f"{caffe_dir}: no _caffe*.so: pycaffe was not built (run `make setup`)")
    ext = exts[0].resolve()
    needed, search = elf_dynamic(ext)
    names = list(needed)
    dirs = [ext.parent] + [pathlib.Path(d.replace("$ORIGIN", str(ext.parent)).replace("${ORIGIN}", str(ext.parent)))
                           for d in search]
    for lib in [n for n in needed if n.startswith("libcaffe")]:
        path = next((d / lib for d in dirs if (d / lib).is_file()), None)
        if path is None:
            path = next((p for p in _loaded_paths() if p.name == lib), None)
        if path is None:
            raise UserError(f"{ext}: cannot find {lib} (searched {', '.join(map(str, dirs))}) "
                            "to tell whether this Caffe was built with CUDA")
        names += elf_dynamic(path)[0]
    cuda_libs = tuple(sorted({n for n in names if CUDA_LIBS.match(n)}))
    major = next((int(m.group(1)) for n in cuda_libs if (m := re.match(r"libcudart\.so\.(\d+)", n))), None)
    arch_bin = arch_ptx = ()
    info = caffe_dir.parent / BUILD_INFO
    if cuda_libs and info.is_file():
        meta = read_json_file(info, "build information")
        try:
            arch_bin = tuple(int(a.split("(")[0]) for a in meta["cuda_arch_bin"].split())
            arch_ptx = tuple(int(a) for a in meta["cuda_arch_ptx"].split())
        except (ValueError, KeyError, AttributeError, TypeError) as e:
            raise UserError(f"{info}: unreadable build information ({e}); rebuild with make caffe-cuda")
    return CaffeBuild(caffe_dir, cuda_libs, major, arch_bin, arch_ptx)


def arch_supported(cc, arch_bin, arch_ptx):
    """Can a GPU of compute capability cc = (major, minor) run code built for arch_bin (real,
    e.g. 80 = sm_80) and arch_ptx (virtual)? Real code runs on the same major and an equal or
    newer minor; PTX is compiled by the driver for any equal or newer GPU."""
    major, minor = cc
    return (any(a // 10 == major and a % 10 <= minor for a in arch_bin)
            or any(a <= major * 10 + minor for a in arch_ptx))


# ---------------------------------------------------------------- the driver
@dataclasses.dataclass(frozen=True)
class GpuInfo:
    device_id: int
    name: str
    compute_capability: tuple      # (major, minor)
    memory_bytes: int
    driver_cuda: tuple             # highest CUDA version the driver supports, (major, minor)

    def describe(self):
        return (f"GPU {self.device_id}: {self.name}, compute capability "
                f"{self.compute_capability[0]}.{self.compute_capability[1]}, "
                f"{self.memory_bytes / 2**30:.1f} GiB, driver for CUDA {self.driver_cuda[0]}.{self.driver_cuda[1]}")


def _load_driver():
    try:
        return ctypes.CDLL("libcuda.so.1")
    except OSError:
        raise UserError("no NVIDIA driver on this machine (libcuda.so.1 not found): install the NVIDIA "
                        "driver; in Docker run with --gpus all (NVIDIA Container Toolkit); "
                        "or leave GPU empty to run on the CPU") from None


def has_driver():
    """An NVIDIA driver library can be loaded on this machine (says nothing of its GPUs)."""
    try:
        _load_driver()
        return True
    except UserError:
        return False


def _error_name(lib, rc):
    name = ctypes.c_char_p()
    if lib.cuGetErrorName(rc, ctypes.byref(name)) == 0 and name.value:
        return f"{name.value.decode()} ({rc})"
    return f"error {rc}"


def driver_devices(lib=None):
    """Start the CUDA driver. Returns (lib, device count, driver CUDA version (major, minor))."""
    lib = lib or _load_driver()
    ver = ctypes.c_int(0)
    lib.cuDriverGetVersion(ctypes.byref(ver))
    driver_cuda = (ver.value // 1000, ver.value % 1000 // 10)
    rc = lib.cuInit(0)
    if rc == _NO_DEVICE:
        raise UserError("the NVIDIA driver sees no GPU (cuInit: CUDA_ERROR_NO_DEVICE): check "
                        "nvidia-smi and CUDA_VISIBLE_DEVICES; in Docker pass --gpus all")
    if rc == _STUB:
        raise UserError("libcuda.so.1 is the CUDA toolkit's stub, not a driver: install the NVIDIA "
                        "driver (in Docker: run with --gpus all)")
    if rc != 0:
        raise UserError(f"the NVIDIA driver cannot start CUDA (cuInit: {_error_name(lib, rc)}, "
                        f"driver for CUDA {driver_cuda[0]}.{driver_cuda[1]}): check nvidia-smi")
    count = ctypes.c_int(0)
    rc = lib.cuDeviceGetCount(ctypes.byref(count))
    if rc != 0:
        raise UserError(f"cannot count GPUs (cuDeviceGetCount: {_error_name(lib, rc)})")
    return lib, count.value, driver_cuda


def _device_info(lib, device_id, driver_cuda):
    dev = ctypes.c_int(0)
    rc = lib.cuDeviceGet(ctypes.byref(dev), device_id)
    if rc != 0:
        raise UserError(f"GPU {device_id}: cuDeviceGet failed ({_error_name(lib, rc)})")
    name = ctypes.create_string_buffer(256)
    lib.cuDeviceGetName(name, len(name), dev)
    cc = []
    for attr in (_CC_MAJOR, _CC_MINOR):
        v = ctypes.c_int(0)
        lib.cuDeviceGetAttribute(ctypes.byref(v), attr, dev)
        cc.append(v.value)
    mem = ctypes.c_size_t(0)
    lib.cuDeviceTotalMem_v2(ctypes.byref(mem), dev)
    return GpuInfo(device_id, name.value.decode(errors="replace"), tuple(cc), mem.value, driver_cuda)


def gpu_memory_used(lib=None):
    """Bytes in use on the device of this thread's current CUDA context (the one Caffe made
    current), from cuMemGetInfo; None when there is no driver or no current context."""
    try:
        lib = lib or ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    ctx = ctypes.c_void_p()
    if lib.cuCtxGetCurrent(ctypes.byref(ctx)) != 0 or not ctx.value:
        return None
    free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
    if lib.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)) != 0:
        return None
    return total.value - free.value


def parse_gpu(gpu):
    """GPU id from an int or a string; None for the CPU: nothing ('' or None) or -1, as Caffe's
    tools take it. Any other negative number is a mistake, not the CPU."""
    if gpu is None or (isinstance(gpu, str) and gpu.strip() == ""):
        return None
    try:
        g = int(gpu)
    except (TypeError, ValueError):
        g = None
    if g is None or g < -1:
        raise UserError(f"GPU {str(gpu)!r}: expected a GPU number >= 0, or -1 or nothing for the CPU")
    return g if g >= 0 else None


def gpu_option(text):
    """The argparse type of every command's --gpu (parse_gpu)."""
    try:
        return parse_gpu(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def check_gpu(device_id, caffe_dir=None):
    """Make sure Caffe can run on GPU `device_id`, without calling Caffe's GPU code.

    device_id: the CUDA device number (as CUDA_VISIBLE_DEVICES numbers them).
    caffe_dir: the `caffe` package folder (default: the one `import caffe` loads).
    Returns a GpuInfo; raises UserError naming the problem otherwise.
    """
    build = caffe_build(caffe_dir)
    if not build.cuda:
        raise UserError(f"GPU {device_id} requested, but the pycaffe at {build.caffe_dir} is a CPU-only "
                        "build: build the CUDA one (make caffe-cuda, then make setup CAFFE_PYTHON=<the folder "
                        "it prints>) or use the Docker image; or leave GPU empty to run on the CPU")
    lib, count, driver_cuda = driver_devices()
    if build.cuda_major and driver_cuda[0] < build.cuda_major:
        raise UserError(f"the NVIDIA driver supports CUDA up to {driver_cuda[0]}.{driver_cuda[1]}, but this "
                        f"Caffe was built with CUDA {build.cuda_major}: update the driver, or build Caffe "
                        f"with a CUDA {driver_cuda[0]} toolkit")
    if not 0 <= device_id < count:
        raise UserError(f"GPU {device_id} requested, but {count} GPU(s) visible"
                        + (f" (use 0..{count - 1})" if count else ""))
    info = _device_info(lib, device_id, driver_cuda)
    if (build.arch_bin or build.arch_ptx) and not arch_supported(info.compute_capability, build.arch_bin, build.arch_ptx):
        cc = "%d%d" % info.compute_capability
        raise UserError(f"{info.name} (compute capability {info.compute_capability[0]}."
                        f"{info.compute_capability[1]}) cannot run this Caffe build ({build.describe()}): "
                        f"rebuild with CUDA_ARCH_BIN=\"{cc}\"")
    return info


def select_mode(gpu=None, caffe_dir=None):
    """Put Caffe in CPU mode (gpu None, '' or negative) or, after check_gpu, on GPU `gpu`.

    gpu: GPU id (int or digit string) or None. caffe_dir: as in check_gpu.
    Returns a one-line description of the mode chosen.
    """
    import caffe
    g = parse_gpu(gpu)
    if g is None:
        caffe.set_mode_cpu()
        return "CPU"
    info = check_gpu(g, caffe_dir)
    caffe.set_device(g)
    caffe.set_mode_gpu()
    return info.describe()


@cli
def main(argv=None):
    ap = ArgumentParser(prog="python -m core.device", description=__doc__.split("\n")[0])
    ap.add_argument("--gpu", type=gpu_option, help="check this GPU id (exit status 2 when unusable)")
    args = ap.parse_args(argv)
    g = parse_gpu(args.gpu)
    if g is not None:
        print(check_gpu(g).describe())
        return
    print(caffe_build().describe())
    try:
        _, count, driver_cuda = driver_devices()
        print(f"NVIDIA driver for CUDA {driver_cuda[0]}.{driver_cuda[1]}, {count} GPU(s) visible")
    except UserError as e:
        print(f"no usable GPU: {e}")


if __name__ == "__main__":
    main()
