// Elementwise and data-movement ops of the wgpu backend (mirrors src/backend/reference.rs):
//   add, sub           out[n] = a[n] ± b[n]
//   add_bias           out[r, c] = a[r, c] + b[c]                       (b: [width])
//   interpolate        out[k, n] = a[n] + alphas[k] · b[n]              (a = origin, b = Δ)
//   token_tangents     out[k, m, i, c] = a[i, c] if i = first + m else 0   (a = Δ: [tokens, width])
//   gather_rows        out[r, c] = a[ids[r], c]                          (a: [table rows, width])
//   scatter_rows       out[row, c] = Σ_{r: ids[r] = row} a[r, c], r ascending
// Layout: flat row-major f32 arrays; shapes in `params`.
// Workgroup: 256 invocations along x, one per output element. The grid is two-dimensional
// (at most 65535 groups along x) so that outputs beyond 16M elements still get one each.

// `real` is the storage type of the tensors, f32 or f16 (a one-line prelude chosen by
// --precision); arithmetic and workgroup memory are f32 throughout.

struct Params {
    len: u32,      // output elements
    width: u32,    // row width
    count: u32,    // alphas; tangent directions; ids
    first: u32,    // first tangent direction
    tokens: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<real>;
@group(0) @binding(2) var<storage, read> b: array<real>;
@group(0) @binding(3) var<storage, read> ids: array<u32>;
@group(0) @binding(4) var<storage, read> alphas: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<real>;

fn element(group: vec3<u32>, groups: vec3<u32>, local: u32) -> u32 {
    return (group.y * groups.x + group.x) * 256u + local;
}

@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
       @builtin(local_invocation_index) local: u32) {
    let n = element(group, groups, local);
    if (n < params.len) {
        out[n] = real(f32(a[n]) + f32(b[n]));
    }
}

@compute @workgroup_size(256)
fn sub(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
       @builtin(local_invocation_index) local: u32) {
    let n = element(group, groups, local);
    if (n < params.len) {
        out[n] = real(f32(a[n]) - f32(b[n]));
    }
}

@compute @workgroup_size(256)
fn add_bias(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
            @builtin(local_invocation_index) local: u32) {
    let n = element(group, groups, local);
    if (n < params.len) {
        out[n] = real(f32(a[n]) + f32(b[n % params.width]));
    }
}

@compute @workgroup_size(256)
fn interpolate(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) local: u32) {
    let n = element(group, groups, local);
    if (n < params.len) {
        let inner = n % params.width;   // width = the origin's length here
        out[n] = real(f32(a[inner]) + alphas[n / params.width] * f32(b[inner]));
    }
}

@compute @workgroup_size(256)
fn token_tangents(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_index) local: u32) {
    let n = element(group, groups, local);
    if (n < params.len) {
        let c = n % params.width;
        let i = (n / params.width) % params.tokens;
        let m = (n / (params.width * params.tokens)) % params.count;
        var value = 0.0;
        if (i == params.first + m) {
            value = f32(a[i * params.width + c]);
        }
        out[n] = real(value);
    }
}

@compute @workgroup_size(256)
fn gather_rows(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) local: u32) {
    let n = element(group, groups, local);
    if (n < params.len) {
        let c = n % params.width;
        out[n] = real(f32(a[ids[n / params.width] * params.width + c]));
    }
}

@compute @workgroup_size(256)
fn scatter_rows(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) local: u32) {
    let n = element(group, groups, local);
    if (n < params.len) {
        let c = n % params.width;
        let row = n / params.width;
        var sum = 0.0;
        for (var r = 0u; r < params.count; r++) {
            if (ids[r] == row) {
                sum += f32(a[r * params.width + c]);
            }
        }
        out[n] = real(sum);
    }
}
