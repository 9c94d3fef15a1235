"""Expected values for DynamicBlocksTests: bitsandbytes' double quantization of NF4 absmax values, computed the way
bitsandbytes' portable (non-CUDA) backend computes it with PyTorch: the signed dynamic map, then torch.bucketize against
the midpoints of neighbouring code values, which is a different algorithm from the CUDA kernel's binary search that
DynamicBlocks follows. Run with PyTorch (Debian's python3-torch 1.13 gave the table in the test):

    python3 Tests/Quantization/double_quant_reference.py
"""
import struct

import torch


def dynamic_map():
    """bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for each exponent e = 0..6, the
    means of neighbouring points of a float32 linspace(0.1, 1, 2**e + 1), times 10**(e - 6), with both signs; then 0
    and 1; sorted."""
    data = []
    for e in range(7):
        points = torch.linspace(0.1, 1, 2**e + 1, dtype=torch.float32)
        means = (points[:-1] + points[1:]) / 2.0
        data += ((10 ** (e - 6)) * means).tolist()
        data += (-(10 ** (e - 6)) * means).tolist()
    data += [0, 1.0]
    assert len(data) == 256
    return torch.tensor(sorted(data), dtype=torch.float32)


def inputs(count):
    """The absmax values the test makes: 0.01 + 0.08 * ((i * 2654435761 mod 2**32) mod 100003) / 100003, in float32."""
    out = []
    for i in range(count):
        h = (i * 2654435761) % 2**32 % 100003
        x = torch.tensor(float(h), dtype=torch.float32) / torch.tensor(100003.0, dtype=torch.float32)
        out.append(float(x * torch.tensor(0.08, dtype=torch.float32) + torch.tensor(0.01, dtype=torch.float32)))
    return torch.tensor(out, dtype=torch.float32)


def double_quantize(absmax, code, blocksize=256):
    offset = absmax.mean()
    centred = absmax - offset
    n = centred.numel()
    out = torch.empty_like(centred)
    bounds = (code[:-1] + code[1:]) / 2
    for start in range(0, n, blocksize):
        block = centred[start:start + blocksize]
        blockmax = block.abs().max()
        scaled = torch.clamp(block * (1.0 / blockmax), -1, 1)
        q = torch.bucketize(scaled, bounds)
        out[start:start + blocksize] = code[q] * blockmax
    return out + offset, offset


def bits(x):
    return struct.unpack('<I', struct.pack('<f', float(x)))[0]


code = dynamic_map()
values, offset = double_quantize(inputs(700), code)
print('code:', ' '.join(f'0x{bits(c):08X}' for c in code))
print(f'offset: 0x{bits(offset):08X}')
print('expected:', ' '.join(f'0x{bits(v):08X}' for v in values))
