import { useState } from "react"

// The form of a new document: title, type, and the services that will see it (among the manager's own).
// Submitted through AskElementMessage; the server checks every value again.
export default function FicheDocument() {
  const [title, setTitle] = useState(props.title || "")
  const [docType, setDocType] = useState(props.doc_type || "procedure")
  const [services, setServices] = useState(props.selected_services || [])
  const toggle = (s) => setServices(services.includes(s) ? services.filter((x) => x !== s) : [...services, s])
  const ready = title.trim().length > 0 && services.length > 0

  return (
    <form className="cv-form" data-testid="document-form" onSubmit={(e) => {
      e.preventDefault()
      if (ready) submitElement({ title: title.trim(), doc_type: docType, services: services })
    }}>
      <div className="cv-hint">Fichier : <strong>{props.file_name}</strong></div>
      <label className="cv-field">
        <span>Titre du document</span>
        <input className="cv-input" name="title" value={title} maxLength={200} onChange={(e) => setTitle(e.target.value)} />
      </label>
      <label className="cv-field">
        <span>Type de document</span>
        <select className="cv-select" name="doc_type" value={docType} onChange={(e) => setDocType(e.target.value)}>
          {(props.doc_types || []).map((t) => <option key={t.value} value={t.value}>{t.label}</option>)}
        </select>
      </label>
      <fieldset className="cv-field" style={{ border: 0, padding: 0, margin: 0 }}>
        <legend className="cv-legend">Services qui pourront le consulter</legend>
        <div className="cv-checks">
          {(props.services || []).map((s) => (
            <label key={s.value}>
              <input type="checkbox" name="services" value={s.value} checked={services.includes(s.value)}
                onChange={() => toggle(s.value)} />
              {s.label}
            </label>
          ))}
        </div>
        <span className="cv-hint">Seulement parmi vos services. Au moins un.</span>
      </fieldset>
      <div className="cv-actions">
        <button type="submit" className="cv-btn cv-btn-primary" disabled={!ready}>Indexer le document</button>
        <button type="button" className="cv-btn" onClick={() => cancelElement()}>Annuler</button>
      </div>
    </form>
  )
}
