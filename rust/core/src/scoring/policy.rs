//! A trained ranking policy loaded from a safetensors file, and the scoring of requests.
//!
//! The file contains float32 weights under fixed tensor names and a JSON description under the
//! `"recrl"` key of the safetensors `__metadata__` header; `recrl.serving.export` writes it and
//! `docs/serving.md` lists the layout. Loading parses the header and copies the tensors; no code
//! is executed. A [`Policy`] is immutable after loading except for two atomic counters, so one
//! instance can serve many threads.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::FxHashMap;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use super::mlp::{Activation, Linear, Mlp};
use super::select::FusionMode;
use crate::error::{Error, Result};

/// Version of the file layout that this reader understands.
pub const FORMAT_VERSION: u64 = 1;

/// History entries equal to this id are padding and are skipped.
pub const HISTORY_PADDING: i64 = -1;

/// Per-feature standardisation `(x - mean) / std` applied to raw inputs before the network.
#[derive(Debug, Clone)]
pub struct Normalisation {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalisation {
    /// Standardise every row of `values` [rows, mean.len()] in place.
    pub fn apply_rows(&self, values: &mut [f32]) {
        let width = self.mean.len();
        for row in values.chunks_exact_mut(width) {
            for ((value, mean), std) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *value = (*value - mean) / std;
            }
        }
    }
}

/// The `recrl.nets.StateEncoder` of a categorical actor: numeric features, one embedding per
/// categorical field, and the mean embedding of the history items.
#[derive(Debug, Clone)]
pub struct Encoder {
    pub numeric_dim: usize,
    pub embedding_dim: usize,
    pub cardinalities: Vec<usize>,
    offsets: Vec<usize>,
    /// [sum of cardinalities, embedding_dim]
    field_table: Vec<f32>,
    /// [history vocabulary, embedding_dim], or empty when the history is not part of the state.
    history_table: Vec<f32>,
    pub include_history: bool,
}

impl Encoder {
    pub fn output_dim(&self) -> usize {
        self.numeric_dim
            + self.cardinalities.len() * self.embedding_dim
            + usize::from(self.include_history) * self.embedding_dim
    }

    /// Append the encoding of one request to `output`; the numeric part is already normalised.
    pub(crate) fn encode(
        &self,
        numeric: &[f32],
        codes: &[i64],
        history: &[i64],
        items: &ItemVocabulary,
        unknown_history: &mut u64,
        output: &mut Vec<f32>,
    ) {
        output.extend_from_slice(numeric);

        // Codes outside [0, cardinality) are values unseen in training: code 0, as in torch.
        let width = self.embedding_dim;
        for ((&code, &cardinality), &offset) in
            codes.iter().zip(&self.cardinalities).zip(&self.offsets)
        {
            let code = if code >= 0 && (code as u64) < cardinality as u64 {
                code as usize
            } else {
                0
            };
            let row = offset + code;
            output.extend_from_slice(&self.field_table[row * width..(row + 1) * width]);
        }

        if self.include_history {
            let start = output.len();
            output.resize(start + width, 0.0);
            let rows = self.history_table.len() / width;
            let mut count = 0usize;
            for &raw in history.iter().filter(|&&raw| raw != HISTORY_PADDING) {
                let index = items.index(raw);
                if index == 0 {
                    *unknown_history += 1;
                    continue;
                }
                let row = index.min(rows - 1);
                let embedding = &self.history_table[row * width..(row + 1) * width];
                for (sum, value) in output[start..].iter_mut().zip(embedding) {
                    *sum += value;
                }
                count += 1;
            }
            let divisor = count.max(1) as f32;
            output[start..].iter_mut().for_each(|sum| *sum /= divisor);
        }
    }
}

/// Raw item ids to the dense indices of the embedding table; 0 is the unknown index.
#[derive(Debug, Clone, Default)]
pub struct ItemVocabulary {
    index_of: FxHashMap<i64, u32>,
}

impl ItemVocabulary {
    /// Map `raw_ids[k]` to index k + 1.
    pub fn new(raw_ids: &[i64]) -> Result<Self> {
        let mut index_of = FxHashMap::default();
        index_of.reserve(raw_ids.len());
        for (position, &raw) in raw_ids.iter().enumerate() {
            if index_of.insert(raw, position as u32 + 1).is_some() {
                return Err(Error::invalid(
                    "item_vocabulary",
                    format!("item id {raw} appears twice"),
                ));
            }
        }
        Ok(ItemVocabulary { index_of })
    }

    #[inline]
    pub fn index(&self, raw: i64) -> usize {
        self.index_of.get(&raw).map_or(0, |&index| index as usize)
    }

    pub fn len(&self) -> usize {
        self.index_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index_of.is_empty()
    }
}

/// The network behind a policy.
#[derive(Debug, Clone)]
pub enum Model {
    /// `recrl.nets.CategoricalActor`: score_j = <f(s), phi(item_j)>.
    Categorical {
        encoder: Option<Encoder>,
        preference: Mlp,
        /// [vocabulary, D]
        item_embeddings: Vec<f32>,
        items: ItemVocabulary,
    },
    /// An MLP over `[request features, candidate features]`, one row per candidate, with K
    /// outputs fused into one score when K > 1.
    Mlp {
        mlp: Mlp,
        state_dim: usize,
        candidate_dim: usize,
        fusion: Option<(FusionMode, Vec<f32>)>,
    },
    /// No network: the candidates carry K predictions each, fused into one score.
    Fusion { mode: FusionMode, weights: Vec<f32> },
}

/// Inputs of `rows` requests, stored row-major.
#[derive(Debug, Clone, Copy)]
pub struct Requests<'a> {
    pub rows: usize,
    /// [rows, state_dim] float32 features (numeric features only for an encoder).
    pub states: &'a [f32],
    /// [rows, fields] categorical codes, empty without an encoder.
    pub categorical: &'a [i64],
    /// [rows, history length] raw item ids, [`HISTORY_PADDING`] for empty slots.
    pub history: &'a [i64],
}

/// The candidates of `rows` requests, `count` per request.
#[derive(Debug, Clone, Copy)]
pub enum Candidates<'a> {
    /// [rows, count] raw item ids (categorical policies).
    Ids(&'a [i64]),
    /// [rows, count, width] float32 features or predictions.
    Rows { values: &'a [f32], width: usize },
}

/// A loaded policy; see the module documentation.
#[derive(Debug)]
pub struct Policy {
    pub model: Model,
    pub normalisation: Option<Normalisation>,
    metadata: String,
    pub(crate) unknown_candidates: AtomicU64,
    unknown_history: AtomicU64,
}

fn format_error(path: &Path, message: impl Into<String>) -> Error {
    Error::invalid(format!("policy file {}", path.display()), message)
}

fn read_f32(
    tensors: &SafeTensors<'_>,
    path: &Path,
    name: &str,
    shape: &[usize],
) -> Result<Vec<f32>> {
    let view = tensors
        .tensor(name)
        .map_err(|_| format_error(path, format!("tensor {name:?} not found")))?;
    if view.dtype() != Dtype::F32 {
        return Err(format_error(
            path,
            format!(
                "tensor {name:?}: expected dtype F32, got {:?}",
                view.dtype()
            ),
        ));
    }
    if view.shape() != shape {
        return Err(format_error(
            path,
            format!(
                "tensor {name:?}: expected shape {shape:?}, got {:?}",
                view.shape()
            ),
        ));
    }
    let values: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|bytes| f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        .collect();
    if let Some(position) = values.iter().position(|v| !v.is_finite()) {
        return Err(format_error(
            path,
            format!(
                "tensor {name:?}: element {position} is {}",
                values[position]
            ),
        ));
    }
    Ok(values)
}

fn read_i64(tensors: &SafeTensors<'_>, path: &Path, name: &str) -> Result<Vec<i64>> {
    let view = tensors
        .tensor(name)
        .map_err(|_| format_error(path, format!("tensor {name:?} not found")))?;
    if view.dtype() != Dtype::I64 || view.shape().len() != 1 {
        return Err(format_error(
            path,
            format!(
                "tensor {name:?}: expected a 1-d I64 tensor, got {:?} of shape {:?}",
                view.dtype(),
                view.shape()
            ),
        ));
    }
    Ok(view
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .collect())
}

/// Field `key` of a JSON object as an unsigned integer.
fn json_usize(object: &Value, key: &str, path: &Path) -> Result<usize> {
    object
        .get(key)
        .and_then(Value::as_u64)
        .map(|v| v as usize)
        .ok_or_else(|| format_error(path, format!("metadata field {key:?}: expected an integer")))
}

fn json_floats(value: &Value, key: &str, path: &Path) -> Result<Vec<f32>> {
    let list = value
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| format_error(path, format!("metadata field {key:?}: expected a list")))?;
    list.iter()
        .map(|v| {
            v.as_f64().map(|f| f as f32).ok_or_else(|| {
                format_error(path, format!("metadata field {key:?}: expected numbers"))
            })
        })
        .collect()
}

fn read_mlp(tensors: &SafeTensors<'_>, path: &Path, description: &Value) -> Result<Mlp> {
    let prefix = description
        .get("prefix")
        .and_then(Value::as_str)
        .ok_or_else(|| format_error(path, "metadata field \"prefix\": expected a string"))?;
    let widths: Vec<usize> = description
        .get("widths")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_u64)
                .map(|w| w as usize)
                .collect()
        })
        .unwrap_or_default();
    if widths.len() < 2 {
        return Err(format_error(
            path,
            "metadata field \"widths\": expected at least 2 widths",
        ));
    }
    let activations = description
        .get("activations")
        .and_then(Value::as_array)
        .ok_or_else(|| format_error(path, "metadata field \"activations\": expected a list"))?
        .iter()
        .map(|a| {
            let name = a.get("name").and_then(Value::as_str).unwrap_or("");
            Activation::from_name(name, a.get("parameter").and_then(Value::as_f64))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut layers = Vec::with_capacity(widths.len() - 1);
    for (position, pair) in widths.windows(2).enumerate() {
        let (inputs, outputs) = (pair[0], pair[1]);
        let weight = read_f32(
            tensors,
            path,
            &format!("{prefix}.{position}.weight"),
            &[outputs, inputs],
        )?;
        let bias = read_f32(
            tensors,
            path,
            &format!("{prefix}.{position}.bias"),
            &[outputs],
        )?;
        layers.push(Linear::new(inputs, outputs, weight, bias)?);
    }
    Mlp::new(layers, activations)
}

fn read_encoder(tensors: &SafeTensors<'_>, path: &Path, description: &Value) -> Result<Encoder> {
    let numeric_dim = json_usize(description, "numeric_dim", path)?;
    let embedding_dim = json_usize(description, "embedding_dim", path)?;
    let cardinalities: Vec<usize> = description
        .get("fields")
        .and_then(Value::as_array)
        .ok_or_else(|| format_error(path, "metadata field \"fields\": expected a list"))?
        .iter()
        .map(|field| json_usize(field, "cardinality", path))
        .collect::<Result<_>>()?;
    let include_history = description
        .get("include_history")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut offsets = Vec::with_capacity(cardinalities.len());
    let mut total = 0usize;
    for &cardinality in &cardinalities {
        offsets.push(total);
        total += cardinality;
    }
    let field_table = if cardinalities.is_empty() {
        Vec::new()
    } else {
        read_f32(tensors, path, "encoder.fields", &[total, embedding_dim])?
    };
    let history_table = if include_history {
        let rows = json_usize(description, "history_vocabulary_size", path)?;
        read_f32(tensors, path, "encoder.items", &[rows, embedding_dim])?
    } else {
        Vec::new()
    };
    Ok(Encoder {
        numeric_dim,
        embedding_dim,
        cardinalities,
        offsets,
        field_table,
        history_table,
        include_history,
    })
}

fn read_fusion(path: &Path, description: &Value) -> Result<Option<(FusionMode, Vec<f32>)>> {
    if description.is_null() {
        return Ok(None);
    }
    let mode = FusionMode::from_name(
        description
            .get("mode")
            .and_then(Value::as_str)
            .unwrap_or(""),
    )?;
    let weights = json_floats(description, "weights", path)?;
    Ok(Some((mode, weights)))
}

impl Policy {
    /// Read a policy from a safetensors file written by `recrl.serving.export`.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, path)
    }

    /// Parse the bytes of a policy file; `path` only names the file in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let tensors = SafeTensors::deserialize(bytes)
            .map_err(|e| format_error(path, format!("not a valid safetensors file: {e}")))?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| format_error(path, format!("not a valid safetensors file: {e}")))?;
        let metadata = header
            .metadata()
            .as_ref()
            .and_then(|entries| entries.get("recrl"))
            .ok_or_else(|| format_error(path, "no \"recrl\" entry in the __metadata__ header"))?
            .clone();
        let description: Value = serde_json::from_str(&metadata)
            .map_err(|e| format_error(path, format!("metadata is not valid JSON: {e}")))?;
        let version = description.get("format_version").and_then(Value::as_u64);
        if version != Some(FORMAT_VERSION) {
            return Err(format_error(
                path,
                format!("format_version: expected {FORMAT_VERSION}, got {version:?}"),
            ));
        }

        let kind = description
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("");
        let model = match kind {
            "categorical" => Self::read_categorical(&tensors, path, &description)?,
            "mlp" => {
                let mlp = read_mlp(&tensors, path, &description["mlp"])?;
                let state_dim = json_usize(&description["state"], "dim", path)?;
                let candidate_dim = json_usize(&description["candidates"], "dim", path)?;
                let fusion = read_fusion(path, &description["fusion"])?;
                if state_dim + candidate_dim != mlp.input_dim() {
                    return Err(format_error(
                        path,
                        format!(
                            "state dim {state_dim} + candidate dim {candidate_dim} differs from \
                             the MLP input width {}",
                            mlp.input_dim()
                        ),
                    ));
                }
                let outputs = fusion.as_ref().map_or(1, |(_, weights)| weights.len());
                if mlp.output_dim() != outputs {
                    return Err(format_error(
                        path,
                        format!(
                            "the MLP has {} outputs but the fusion expects {outputs}",
                            mlp.output_dim()
                        ),
                    ));
                }
                Model::Mlp {
                    mlp,
                    state_dim,
                    candidate_dim,
                    fusion,
                }
            }
            "fusion" => {
                let (mode, weights) = read_fusion(path, &description["fusion"])?
                    .ok_or_else(|| format_error(path, "a fusion policy needs \"fusion\""))?;
                Model::Fusion { mode, weights }
            }
            other => {
                return Err(format_error(
                    path,
                    format!("kind: expected categorical, mlp or fusion, got {other:?}"),
                ))
            }
        };

        let normalisation = match description["state"].get("normalisation") {
            None | Some(Value::Null) => None,
            Some(stats) => Some(Normalisation {
                mean: json_floats(stats, "mean", path)?,
                std: json_floats(stats, "std", path)?,
            }),
        };
        let policy = Policy {
            model,
            normalisation,
            metadata,
            unknown_candidates: AtomicU64::new(0),
            unknown_history: AtomicU64::new(0),
        };
        policy.check_normalisation(path)?;
        Ok(policy)
    }

    fn read_categorical(
        tensors: &SafeTensors<'_>,
        path: &Path,
        description: &Value,
    ) -> Result<Model> {
        let encoder = match description.get("encoder") {
            None | Some(Value::Null) => None,
            Some(encoder) => Some(read_encoder(tensors, path, encoder)?),
        };
        let preference = read_mlp(tensors, path, &description["mlp"])?;
        let expected_input = encoder.as_ref().map_or(
            json_usize(&description["state"], "dim", path)?,
            Encoder::output_dim,
        );
        if preference.input_dim() != expected_input {
            return Err(format_error(
                path,
                format!(
                    "the preference MLP takes {} inputs but the state has {expected_input}",
                    preference.input_dim()
                ),
            ));
        }
        let vocabulary_size = json_usize(&description["candidates"], "vocabulary_size", path)?;
        let item_embeddings = read_f32(
            tensors,
            path,
            "item_embeddings",
            &[vocabulary_size, preference.output_dim()],
        )?;
        let raw_ids = read_i64(tensors, path, "item_vocabulary")?;
        if raw_ids.len() >= vocabulary_size {
            return Err(format_error(
                path,
                format!(
                    "item_vocabulary has {} ids but the embedding table only {vocabulary_size} \
                     rows (index 0 is the unknown item)",
                    raw_ids.len()
                ),
            ));
        }
        Ok(Model::Categorical {
            encoder,
            preference,
            item_embeddings,
            items: ItemVocabulary::new(&raw_ids)?,
        })
    }

    fn check_normalisation(&self, path: &Path) -> Result<()> {
        let Some(stats) = &self.normalisation else {
            return Ok(());
        };
        let expected = self.normalised_width();
        if stats.mean.len() != expected || stats.std.len() != expected {
            return Err(format_error(
                path,
                format!(
                    "normalisation: expected {expected} means and standard deviations, got {} \
                     and {}",
                    stats.mean.len(),
                    stats.std.len()
                ),
            ));
        }
        if let Some(position) = stats.std.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(format_error(
                path,
                format!(
                    "normalisation: std {position} is {}, expected > 0",
                    stats.std[position]
                ),
            ));
        }
        Ok(())
    }

    /// Width of the raw input that the normalisation statistics cover.
    fn normalised_width(&self) -> usize {
        match &self.model {
            Model::Categorical {
                encoder: Some(encoder),
                ..
            } => encoder.numeric_dim,
            Model::Categorical { preference, .. } => preference.input_dim(),
            Model::Mlp {
                state_dim,
                candidate_dim,
                ..
            } => state_dim + candidate_dim,
            Model::Fusion { weights, .. } => weights.len(),
        }
    }

    /// Return the JSON description stored in the file.
    pub fn metadata(&self) -> &str {
        &self.metadata
    }

    /// `"categorical"`, `"mlp"` or `"fusion"`.
    pub fn kind(&self) -> &'static str {
        match self.model {
            Model::Categorical { .. } => "categorical",
            Model::Mlp { .. } => "mlp",
            Model::Fusion { .. } => "fusion",
        }
    }

    /// Width of each request's state (numeric features for an encoder, 0 for fusion).
    pub fn state_dim(&self) -> usize {
        match &self.model {
            Model::Categorical {
                encoder: Some(encoder),
                ..
            } => encoder.numeric_dim,
            Model::Categorical { preference, .. } => preference.input_dim(),
            Model::Mlp { state_dim, .. } => *state_dim,
            Model::Fusion { .. } => 0,
        }
    }

    /// Number of categorical fields each request carries (0 without an encoder).
    pub fn categorical_fields(&self) -> usize {
        match &self.model {
            Model::Categorical {
                encoder: Some(encoder),
                ..
            } => encoder.cardinalities.len(),
            _ => 0,
        }
    }

    /// Return whether requests carry a history of item ids.
    pub fn uses_history(&self) -> bool {
        matches!(&self.model, Model::Categorical { encoder: Some(e), .. } if e.include_history)
    }

    /// Values per candidate: 0 for item ids, the feature or prediction width otherwise.
    pub fn candidate_width(&self) -> usize {
        match &self.model {
            Model::Categorical { .. } => 0,
            Model::Mlp { candidate_dim, .. } => *candidate_dim,
            Model::Fusion { weights, .. } => weights.len(),
        }
    }

    /// Candidate ids not found in the item vocabulary since loading.
    pub fn unknown_candidates(&self) -> u64 {
        self.unknown_candidates.load(Ordering::Relaxed)
    }

    pub(crate) fn unknown_history_counter(&self) -> &AtomicU64 {
        &self.unknown_history
    }

    /// History ids not found in the item vocabulary since loading.
    pub fn unknown_history(&self) -> u64 {
        self.unknown_history.load(Ordering::Relaxed)
    }
}
