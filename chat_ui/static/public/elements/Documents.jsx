import { useState } from "react"

// The documents a manager may replace or withdraw (those of their services).
export default function Documents() {
  const [filter, setFilter] = useState("")
  const [confirming, setConfirming] = useState(null)
  const [withdrawn, setWithdrawn] = useState(props.withdrawn || [])
  const [busy, setBusy] = useState(null)
  const [message, setMessage] = useState("")
  const needle = filter.trim().toLowerCase()
  const docs = (props.documents || []).filter((d) =>
    !needle || (d.title + " " + d.doc_id + " " + d.type).toLowerCase().includes(needle))

  const withdraw = async (doc) => {
    setBusy(doc.doc_id)
    setMessage("")
    try {
      const res = await callAction({ name: "Retirer un document", payload: { doc_id: doc.doc_id } })
      const answer = res && res.response
      if (answer && answer.ok) {
        const next = [...withdrawn, doc.doc_id]
        setWithdrawn(next)
        updateElement(Object.assign({}, props, { withdrawn: next }))
      } else {
        setMessage((answer && answer.error) || "Le retrait a échoué.")
      }
    } catch (e) {
      setMessage("Le retrait a échoué.")
    }
    setConfirming(null)
    setBusy(null)
  }

  const replace = async (doc) => {
    setMessage("")
    const res = await callAction({ name: "Remplacer un document", payload: { doc_id: doc.doc_id } })
    const answer = res && res.response
    if (!(answer && answer.ok)) setMessage((answer && answer.error) || "Le remplacement n'a pas pu démarrer.")
  }

  return (
    <div className="cv-doclist" data-testid="documents">
      <input className="cv-input" aria-label="Filtrer les documents" placeholder="Filtrer par titre, identifiant ou type…"
        value={filter} onChange={(e) => setFilter(e.target.value)} />
      {props.truncated ? <div className="cv-hint">{props.total} documents : seuls les {props.documents.length} premiers sont listés, filtrez pour affiner.</div> : null}
      {message ? <div className="cv-error" role="alert">{message}</div> : null}
      {docs.length === 0 ? <div className="cv-hint">Aucun document.</div> : null}
      {docs.map((d) => {
        const gone = withdrawn.includes(d.doc_id)
        return (
          <div key={d.doc_id} className={"cv-docrow" + (gone ? " cv-withdrawn" : "")} data-doc-id={d.doc_id}>
            <div style={{ minWidth: 0, flex: 1 }}>
              <div className="cv-title">{d.title}
                {d.status === "abroge" ? <span className="cv-badge">abrogé</span> : null}
                {gone ? <span className="cv-badge">retiré</span> : null}
              </div>
              <div className="cv-meta">{d.doc_id} · {d.type} · {(d.services || []).join(", ")}</div>
            </div>
            {gone ? null : confirming === d.doc_id ? (
              <div className="cv-actions">
                <span className="cv-hint">Retirer ce document de l'assistant ?</span>
                <button type="button" className="cv-btn cv-btn-danger" disabled={busy === d.doc_id} onClick={() => withdraw(d)}>Oui, retirer</button>
                <button type="button" className="cv-btn" onClick={() => setConfirming(null)}>Annuler</button>
              </div>
            ) : (
              <div className="cv-actions">
                <button type="button" className="cv-btn" onClick={() => replace(d)}>Remplacer</button>
                <button type="button" className="cv-btn cv-btn-danger" onClick={() => setConfirming(d.doc_id)}>Retirer</button>
              </div>
            )}
          </div>
        )
      })}
    </div>
  )
}
