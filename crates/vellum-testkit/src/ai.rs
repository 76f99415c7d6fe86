//! Payloads and calls for the `/ai/v1` API.

use serde_json::{json, Value};

use super::TestApp;

pub fn model(name: &str, version: &str, deployed_at: &str) -> Value {
    json!({
        "name": name,
        "version": version,
        "provider": "Example AI Ltd",
        "endpoint": "https://ai.example/v2/infer",
        "training_date": "2025-11-30",
        "validation": {
            "reference": "https://ai.example/validation/2.4.1",
            "results": [
                {"metric": "AUC", "value": 0.953, "dataset": "internal-2025"},
                {"metric": "sensitivity", "value": "0.910"}
            ]
        },
        "description": "Chest X-ray triage",
        "deployed_at": deployed_at,
        "user": {"id": "admin-1", "role": "ai-admin"},
        "source": {"system": "ai-orchestrator-01", "ip": "10.0.0.9"}
    })
}

pub fn inference(event_id: &str, version: &str) -> Value {
    json!({
        "event_id": event_id,
        "time": "2026-03-14T09:26:53.412+01:00",
        "started": "2026-03-14T09:26:52.101+01:00",
        "user": {"id": "rad-7", "system": "urn:oid:1.2.3.4", "name": "Dr. A. Example",
                 "role": "radiologist", "session": "sess-42"},
        "source": {"system": "ai-orchestrator-01", "site": "Radiology", "ip": "10.0.0.5"},
        "patient": {"id": "8675309", "system": "urn:oid:1.2.3.4.5"},
        "access_policy": ["https://hospital.example/policy/ai-use-v3"],
        "model": {"name": "chest-xray-ai", "version": version},
        "study": {
            "uid": "1.2.826.0.1.3680043.8.498.1",
            "accession": "ACC-2026-0314-0007",
            "pixel_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "instances": 12,
            "sop_class": "1.2.840.10008.5.1.4.1.1.1.1",
            "priors": ["1.2.826.0.1.3680043.8.498.0"]
        },
        "findings": [
            {"code": "RID5352", "system": "http://radlex.org", "display": "pneumothorax", "confidence": 0.940},
            {"code": "RID28496", "system": "http://radlex.org", "display": "pleural effusion", "confidence": "0.120"}
        ],
        "heatmap_time": "2026-03-14T08:26:53.300Z",
        "latency_ms": 1311,
        "gpu_memory_mb": 2048,
        "cpu_fallback": false,
        "prompt_tokens": 812,
        "output_tokens": 64,
        "prompt": "Findings for chest PA of patient 8675309?",
        "output": "Right apical pneumothorax, 2 cm.",
        "redaction_policy": "https://hospital.example/policy/redaction-v2"
    })
}

pub fn override_of(event_id: &str, inference_id: &str) -> Value {
    json!({
        "event_id": event_id,
        "time": "2026-03-14T08:31:12Z",
        "user": {"id": "rad-7", "role": "radiologist", "session": "sess-42"},
        "source": {"system": "pacs-viewer-3", "device": "ws-rad-12"},
        "inference_id": inference_id,
        "action": "accept_with_edit",
        "reason_code": "wrong-measurement",
        "reason_text": "Pneumothorax is 3 cm, not 2 cm.",
        "edit_diff": "- size: 2 cm\n+ size: 3 cm\n"
    })
}

pub fn rendering_of(event_id: &str, inference_id: &str) -> Value {
    json!({
        "event_id": event_id,
        "time": "2026-03-14T08:27:30Z",
        "user": {"id": "rad-7", "role": "radiologist"},
        "source": {"system": "pacs-viewer-3", "ip": "10.0.0.5"},
        "inference_id": inference_id,
        "destination": "pacs-viewer-3",
        "format": "GSPS",
        "viewed": true
    })
}

impl TestApp {
    pub async fn ai_post(
        &self,
        path: &str,
        body: &Value,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        self.ai_post_raw(path, body.to_string()).await
    }

    /// Posts JSON text as written (e.g. a number with trailing zeros).
    pub async fn ai_post_raw(
        &self,
        path: &str,
        body: String,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let r = self
            .client
            .post(format!("{}/ai/v1/{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let v = r.json().await.unwrap_or(Value::Null);
        (status, v, headers)
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Number of stored entries (from /admin/verify).
    pub async fn entries(&self) -> u64 {
        let (_, v) = self.get_json("/admin/verify").await;
        v["entries"].as_u64().expect("entries")
    }

    /// Registers the model version and stores one inference; returns the ids.
    pub async fn ai_inference_chain(&self, tag: &str) -> (String, String) {
        let (s, m, _) = self
            .ai_post(
                "models",
                &model("chest-xray-ai", "2.4.1", "2026-01-10T08:00:00Z"),
            )
            .await;
        assert!(s == 201 || s == 200, "{s} {m}");
        let (s, i, _) = self
            .ai_post("inferences", &inference(&format!("inf-{tag}"), "2.4.1"))
            .await;
        assert_eq!(s, 201, "{i}");
        (
            m["id"].as_str().unwrap().to_string(),
            i["id"].as_str().unwrap().to_string(),
        )
    }
}
