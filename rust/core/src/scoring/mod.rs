//! Serving-time scoring of candidates by an exported policy.
//!
//! - [`select`]: fusion of K per-candidate predictions (weighted sum, or the product
//!   `prod_k p_k^w_k` in log space) and top-k by partial selection.
//! - [`mlp`]: the forward pass of `recrl.nets.MLP`, hand-written for one row and GEMM for many.
//! - [`policy`]: loading a policy file (safetensors weights plus a JSON description).
//! - `score`: scoring requests with a loaded [`Policy`], one at a time or in batches.

pub mod kernels;
pub mod mlp;
pub mod policy;
mod score;
pub mod select;

pub use policy::{Candidates, Policy, Requests, HISTORY_PADDING};
pub use select::{fuse, top_k, FusionMode, NonFinite};
